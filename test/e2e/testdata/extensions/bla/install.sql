CREATE TABLE bla_t(x int);
