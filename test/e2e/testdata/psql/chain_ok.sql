-- One Query message: psql shows the result of each part.
SELECT 1 AS one \; INSTALL EXTENSION bar \; SELECT count(*) AS baz_rows FROM baz_data;
