\echo Use "CREATE EXTENSION multi" to load this file. \quit
CREATE TABLE multi_t (v text);
INSERT INTO multi_t VALUES ('1.0');
