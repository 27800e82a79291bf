-- Rate-limit counters shared by every node: one row per bucket (a hash of what is limited,
-- never a credential) and fixed window. Rows of past windows are purged by the background job.
CREATE TABLE rate_limits (
    bucket        TEXT    NOT NULL,
    window_start  INTEGER NOT NULL,
    hits          INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limits_by_expiry ON rate_limits (expires_at);
