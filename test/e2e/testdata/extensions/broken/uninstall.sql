DROP TABLE broken_first_half;
