\echo Use "CREATE EXTENSION cfgdump" to load this file. \quit
CREATE TABLE @extschema@.settings (k text PRIMARY KEY, v text, builtin bool NOT NULL DEFAULT false);
INSERT INTO @extschema@.settings VALUES ('a', '1', true), ('b', '2', true);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.settings', 'WHERE NOT builtin');
CREATE SEQUENCE @extschema@.ids START 100;
SELECT nextval('@extschema@.ids');
SELECT pg_extension_config_dump('@extschema@.ids', '');
CREATE TABLE @extschema@.log (id bigint DEFAULT nextval('@extschema@.ids'), msg text);
-- A second call for the same table replaces its condition, here from a DO block.
DO $$
BEGIN
  PERFORM pg_catalog.pg_extension_config_dump('@extschema@.log', 'WHERE msg <> ''boot''');
END
$$;
\echo a line in the middle of the script, removed like the first
INSERT INTO @extschema@.log (msg) VALUES ('boot');
SET LOCAL client_encoding = 'UTF8';
CREATE FUNCTION @extschema@.path() RETURNS text LANGUAGE sql
  SET search_path = @extschema@, pg_temp
  AS $$ SELECT '@extschema@,pg_temp'::text $$;
CREATE FUNCTION @extschema@.current_path() RETURNS text LANGUAGE sql
  SET search_path FROM CURRENT
  AS $$ SELECT pg_catalog.current_setting('search_path') $$;
CREATE VIEW @extschema@.other_schemas AS
  SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname NOT IN ('pg_catalog', '@extschema@');
CREATE FUNCTION @extschema@.installed_by() RETURNS text LANGUAGE sql AS $$ SELECT '@extowner@'::text $$;
GRANT SELECT ON @extschema@.settings TO PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.path() FROM PUBLIC;
GRANT USAGE ON SEQUENCE @extschema@.ids TO PUBLIC;
