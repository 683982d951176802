CREATE OR REPLACE FUNCTION multi_version() RETURNS text LANGUAGE sql AS $$ SELECT '2.0'::text $$;
DROP FUNCTION multi_new_in_11();
CREATE VIEW multi_view AS SELECT id FROM multi_log;
