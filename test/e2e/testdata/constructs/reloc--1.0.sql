CREATE VIEW reloc_literal AS SELECT '@extschema@'::text AS s;
CREATE FUNCTION reloc_f() RETURNS int LANGUAGE sql AS 'SELECT 7';
