-- Key pools (Keygen's keys): keys made ahead of time for a policy with usePool; a license
-- created under it takes the newest (and the key leaves the pool in the same transaction).
CREATE TABLE keys (
    id          BLOB PRIMARY KEY,
    account_id  BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    product_id  BLOB NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    policy_id   BLOB NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (account_id, key)
);
CREATE INDEX keys_account_created ON keys(account_id, created_at);
CREATE INDEX keys_policy_created ON keys(policy_id, created_at);
