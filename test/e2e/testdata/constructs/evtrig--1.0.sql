CREATE TABLE @extschema@.ddl_log (tag text, at timestamptz DEFAULT now());
CREATE FUNCTION @extschema@.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  NULL;
END
$$;
CREATE EVENT TRIGGER evtrig_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION @extschema@.on_ddl();
CREATE TABLE @extschema@.after_trigger (x int);
