CREATE FUNCTION usehstore_get(h hstore, k text) RETURNS text LANGUAGE sql AS $$ SELECT h -> k $$;
