-- Applied after ../00001 and ../00002 by TestGooseMigration: the install of
-- bar succeeds, the one of nosuch fails, and the whole migration must be
-- rolled back with goose's transaction.

-- +goose Up
CREATE TABLE mig_fail(id int);
INSERT INTO baz_data VALUES (3);
INSTALL EXTENSION bar;
INSTALL EXTENSION nosuch;

-- +goose Down
UNINSTALL EXTENSION bar;
DELETE FROM baz_data WHERE v = 3;
DROP TABLE mig_fail;
