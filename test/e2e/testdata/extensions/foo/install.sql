CREATE FUNCTION foo_answer() RETURNS int LANGUAGE sql AS $$ SELECT 42 $$;
CREATE TABLE foo_items(id serial PRIMARY KEY, note text);
