-- SQLite's migration 0022 writes license changes to a table its nodes read, because SQLite has
-- no LISTEN/NOTIFY; PostgreSQL's nodes hear them through migration 0021's notifications, so
-- there is nothing to do here. The file keeps the engines' numbers in step.
SELECT 1;
