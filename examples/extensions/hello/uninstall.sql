DROP FUNCTION @extschema@.hello(text);
