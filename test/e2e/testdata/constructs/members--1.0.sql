CREATE TABLE @extschema@.t1 (x int);
CREATE TABLE @extschema@.t2 (x int);
CREATE FUNCTION @extschema@.helper() RETURNS int LANGUAGE sql AS 'SELECT 1';
-- t2 stays behind when the extension is dropped.
ALTER EXTENSION members DROP TABLE @extschema@.t2;
