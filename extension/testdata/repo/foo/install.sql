\echo Use "INSTALL EXTENSION foo" to load this file. \quit
CREATE TABLE @extschema@.foo_items (id int PRIMARY KEY);
CREATE FUNCTION @extschema@.foo_count() RETURNS bigint LANGUAGE sql
AS $$ SELECT count(*) FROM @extschema@.foo_items; $$;
