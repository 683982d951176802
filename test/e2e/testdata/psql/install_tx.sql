-- An ON_ERROR_STOP script that installs inside an explicit transaction.
BEGIN;
INSTALL EXTENSION baz;
CREATE TABLE script_marker(v int);
INSTALL EXTENSION bar;
SELECT bar_version();
SELECT count(*) AS baz_rows FROM baz_data;
COMMIT;
