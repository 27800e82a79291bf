-- Signed-in sessions of the admin console and the customer portal. The cookie holds a random
-- token; only its SHA-256 digest is stored, as for API tokens.
CREATE TABLE console_sessions (
    digest      TEXT PRIMARY KEY,
    account_id  BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    user_id     BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- 'admin' (the console) or 'portal'.
    kind        TEXT NOT NULL,
    -- The form token every POST of this session must carry.
    csrf        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
