CREATE TABLE baz_t (x int);
