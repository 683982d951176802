CREATE FUNCTION pg_catalog.incatalog_answer() RETURNS int LANGUAGE sql AS 'SELECT 42';
CREATE FUNCTION @extschema@.incatalog_schema() RETURNS text LANGUAGE sql AS $$ SELECT '@extschema@'::text $$;
