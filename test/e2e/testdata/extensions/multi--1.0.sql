\echo Use "INSTALL EXTENSION multi" to load this file. \quit
CREATE FUNCTION multi_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0'::text $$;
CREATE TABLE multi_log(id int);
