-- Password resets (Keygen's POST /passwords): the digest of the one outstanding reset token of
-- a user and when it was issued; the raw token goes out once, in a user.password-reset event.
ALTER TABLE users ADD COLUMN password_reset_digest TEXT;
ALTER TABLE users ADD COLUMN password_reset_sent_at BIGINT;
