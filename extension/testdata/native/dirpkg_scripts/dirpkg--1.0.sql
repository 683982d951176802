CREATE TABLE @extschema@.dirpkg_t (name text DEFAULT 'café');
