DROP TABLE foo_items;
DROP FUNCTION foo_answer();
