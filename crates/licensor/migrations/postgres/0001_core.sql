-- Core model shared by every API surface. Timestamps are Unix milliseconds (BIGINT) on both
-- engines so that time arithmetic in SQL (heartbeats, expiry) is written once.

CREATE TABLE accounts (
    id              UUID PRIMARY KEY,
    slug            TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    protected       BOOLEAN NOT NULL DEFAULT FALSE,
    ed25519_public  TEXT NOT NULL,
    ed25519_secret  BYTEA NOT NULL,
    rsa_public      TEXT NOT NULL,
    rsa_secret      BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE groups (
    id           UUID PRIMARY KEY,
    account_id   UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    max_users    BIGINT,
    max_licenses BIGINT,
    max_machines BIGINT,
    metadata     JSONB NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX groups_account ON groups(account_id, created_at);

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    account_id    UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    password_hash TEXT,
    first_name    TEXT,
    last_name     TEXT,
    role          TEXT NOT NULL,
    group_id      UUID REFERENCES groups(id) ON DELETE SET NULL,
    banned_at     BIGINT,
    metadata      JSONB NOT NULL DEFAULT '{}',
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (account_id, email)
);
CREATE INDEX users_account ON users(account_id, created_at);

CREATE TABLE products (
    id                    UUID PRIMARY KEY,
    account_id            UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    code                  TEXT,
    distribution_strategy TEXT,
    url                   TEXT,
    platforms             JSONB,
    metadata              JSONB NOT NULL DEFAULT '{}',
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (account_id, code)
);
CREATE INDEX products_account ON products(account_id, created_at);

CREATE TABLE policies (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    product_id  UUID NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    rules       JSONB NOT NULL,
    metadata    JSONB NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX policies_account ON policies(account_id, created_at);
CREATE INDEX policies_product ON policies(product_id);

CREATE TABLE entitlements (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    code        TEXT NOT NULL,
    metadata    JSONB NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (account_id, code)
);

CREATE TABLE policy_entitlements (
    account_id     UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    policy_id      UUID NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    entitlement_id UUID NOT NULL REFERENCES entitlements(id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (policy_id, entitlement_id)
);

CREATE TABLE licenses (
    id                UUID PRIMARY KEY,
    account_id        UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    product_id        UUID NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    policy_id         UUID NOT NULL REFERENCES policies(id) ON DELETE CASCADE,
    owner_id          UUID REFERENCES users(id) ON DELETE SET NULL,
    group_id          UUID REFERENCES groups(id) ON DELETE SET NULL,
    key               TEXT NOT NULL,
    name              TEXT,
    expiry            BIGINT,
    suspended         BOOLEAN NOT NULL DEFAULT FALSE,
    protected         BOOLEAN,
    uses              BIGINT NOT NULL DEFAULT 0,
    max_machines      BIGINT,
    max_processes     BIGINT,
    max_users         BIGINT,
    max_cores         BIGINT,
    max_uses          BIGINT,
    max_memory        BIGINT,
    max_disk          BIGINT,
    last_validated_at BIGINT,
    last_check_out_at BIGINT,
    last_check_in_at  BIGINT,
    metadata          JSONB NOT NULL DEFAULT '{}',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (account_id, key)
);
CREATE INDEX licenses_account ON licenses(account_id, created_at);
CREATE INDEX licenses_policy ON licenses(policy_id);
CREATE INDEX licenses_owner ON licenses(owner_id);

CREATE TABLE license_users (
    account_id  UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    license_id  UUID NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    user_id     UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (license_id, user_id)
);
CREATE INDEX license_users_user ON license_users(user_id);

CREATE TABLE license_entitlements (
    account_id     UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    license_id     UUID NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    entitlement_id UUID NOT NULL REFERENCES entitlements(id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (license_id, entitlement_id)
);

CREATE TABLE machines (
    id                UUID PRIMARY KEY,
    account_id        UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    license_id        UUID NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    fingerprint       TEXT NOT NULL,
    name              TEXT,
    ip                TEXT,
    hostname          TEXT,
    platform          TEXT,
    cores             BIGINT,
    memory            BIGINT,
    disk              BIGINT,
    owner_id          UUID REFERENCES users(id) ON DELETE SET NULL,
    group_id          UUID REFERENCES groups(id) ON DELETE SET NULL,
    max_processes     BIGINT,
    last_heartbeat_at BIGINT,
    last_check_out_at BIGINT,
    metadata          JSONB NOT NULL DEFAULT '{}',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (license_id, fingerprint)
);
CREATE INDEX machines_account_fingerprint ON machines(account_id, fingerprint);
CREATE INDEX machines_heartbeat ON machines(last_heartbeat_at);

CREATE TABLE components (
    id          UUID PRIMARY KEY,
    account_id  UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    machine_id  UUID NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    name        TEXT NOT NULL,
    metadata    JSONB NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (machine_id, fingerprint)
);

CREATE TABLE processes (
    id                UUID PRIMARY KEY,
    account_id        UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    machine_id        UUID NOT NULL REFERENCES machines(id) ON DELETE CASCADE,
    license_id        UUID NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    pid               TEXT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    metadata          JSONB NOT NULL DEFAULT '{}',
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (machine_id, pid)
);
CREATE INDEX processes_license ON processes(license_id);

CREATE TABLE tokens (
    id                UUID PRIMARY KEY,
    account_id        UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    bearer_type       TEXT NOT NULL,
    bearer_id         UUID NOT NULL,
    digest            TEXT NOT NULL UNIQUE,
    kind              TEXT NOT NULL,
    name              TEXT,
    expiry            BIGINT,
    max_activations   BIGINT,
    activations       BIGINT NOT NULL DEFAULT 0,
    max_deactivations BIGINT,
    deactivations     BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX tokens_bearer ON tokens(bearer_id);
CREATE INDEX tokens_account ON tokens(account_id, created_at);
