\echo Use "INSTALL EXTENSION hello" to load this file. \quit
CREATE FUNCTION @extschema@.hello(who text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT 'hello, ' || who || '!' $$;

COMMENT ON FUNCTION @extschema@.hello(text) IS 'greets someone (pgverbs example package)';
