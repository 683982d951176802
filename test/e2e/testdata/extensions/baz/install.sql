CREATE TABLE @extschema@.baz_data(v int);
INSERT INTO baz_data VALUES (1);
