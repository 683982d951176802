DROP FUNCTION @extschema@.foo_count();
DROP TABLE @extschema@.foo_items;
