-- +goose Up
INSERT INTO baz_data VALUES (2);
INSERT INTO mig_t SELECT v FROM baz_data;

-- +goose Down
DELETE FROM mig_t;
DELETE FROM baz_data WHERE v = 2;
