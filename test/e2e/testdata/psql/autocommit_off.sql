-- With AUTOCOMMIT off psql opens a transaction before the first statement.
\set AUTOCOMMIT off
INSTALL EXTENSION baz;
SELECT count(*) AS baz_rows FROM baz_data;
ROLLBACK;
