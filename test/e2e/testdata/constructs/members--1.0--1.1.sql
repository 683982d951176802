\echo Use "ALTER EXTENSION members UPDATE" to load this file. \quit
CREATE TEMP TABLE scratch AS SELECT x FROM @extschema@.t1;
ALTER EXTENSION members ADD TABLE @extschema@.t2;
ALTER EXTENSION members DROP FUNCTION @extschema@.helper();
DO $$ BEGIN EXECUTE 'CREATE TABLE @extschema@.from_do (y int)'; END $$;
DROP TABLE scratch;
SET search_path = @extschema@, pg_catalog;
