-- Second factors (TOTP), as Keygen has them: one per user, the secret sealed with the master
-- key, the last 30-second step a code was taken for (a code is taken once).
CREATE TABLE second_factors (
    id                 UUID PRIMARY KEY,
    account_id         UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    user_id            UUID NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    secret             BYTEA NOT NULL,
    enabled            BOOLEAN NOT NULL DEFAULT FALSE,
    last_verified_step BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
