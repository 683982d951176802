DROP TABLE everything;
