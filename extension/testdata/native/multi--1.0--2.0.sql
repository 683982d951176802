UPDATE multi_t SET v = '2.0';
