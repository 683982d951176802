CREATE TABLE txctl_t(x int);
COMMIT;
