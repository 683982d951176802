\echo Use "CREATE EXTENSION cext" to load this file. \quit
CREATE FUNCTION cext_f(int) RETURNS int
AS 'MODULE_PATHNAME', 'cext_f'
LANGUAGE C IMMUTABLE STRICT;
