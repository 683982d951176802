CREATE TABLE bar_t (x int);
