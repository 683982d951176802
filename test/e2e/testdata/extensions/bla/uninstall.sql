DROP TABLE bla_t;
