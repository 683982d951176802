DROP FUNCTION bar_version();
