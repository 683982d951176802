DROP TABLE @extschema@.baz_data;
