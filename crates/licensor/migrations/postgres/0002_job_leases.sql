-- Leases for background jobs: with several nodes on one database, one node at a time holds a
-- job's lease, so periodic work (culling dead machines) is not done twice.
CREATE TABLE job_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
INSERT INTO job_leases (name, holder, expires_at) VALUES ('cull', '', 0);
