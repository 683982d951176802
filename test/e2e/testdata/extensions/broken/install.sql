CREATE TABLE broken_first_half(x int);
INSERT INTO broken_first_half VALUES (1);
SELECT no_such_function();
CREATE TABLE broken_never(x int);
