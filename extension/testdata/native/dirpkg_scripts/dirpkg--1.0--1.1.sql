ALTER TABLE @extschema@.dirpkg_t ADD COLUMN n int;
