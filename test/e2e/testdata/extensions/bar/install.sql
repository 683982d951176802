CREATE FUNCTION bar_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.2'::text $$;
