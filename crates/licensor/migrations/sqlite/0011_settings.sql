-- Server-wide values: the master-key check (a known text sealed with the master key), so a
-- node started with another key refuses to run instead of failing every request.
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);
