-- Fails at line 5: psql stops (exit 3), the transaction is rolled back.
BEGIN;
INSTALL EXTENSION baz;
CREATE TABLE before_failure(v int);
INSTALL EXTENSION nosuch;
CREATE TABLE after_failure(v int);
COMMIT;
