DROP TABLE @extschema@.dirpkg_t;
