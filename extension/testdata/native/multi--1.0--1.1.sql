UPDATE multi_t SET v = '1.1';
