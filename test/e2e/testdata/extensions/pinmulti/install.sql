CREATE FUNCTION pinmulti_ok() RETURNS bool LANGUAGE sql AS $$ SELECT true $$;
