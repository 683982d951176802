SELECT pg_sleep(0.05);
CREATE TABLE slow_t(x int);
