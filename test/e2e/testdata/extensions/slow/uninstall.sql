DROP TABLE slow_t;
