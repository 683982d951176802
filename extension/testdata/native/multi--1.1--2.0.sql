UPDATE multi_t SET v = '2.0 via 1.1';
