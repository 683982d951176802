-- +goose Up
INSTALL EXTENSION baz;
CREATE TABLE mig_t(id int);

-- +goose Down
DROP TABLE mig_t;
UNINSTALL EXTENSION baz;
