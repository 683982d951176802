CREATE TABLE @extschema@.plain_t (x int);
