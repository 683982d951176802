-- From a version nobody can install any more.
UPDATE multi_t SET v = '1.0';
