-- Webhooks and the event log. An event is written in the same transaction as the change it
-- describes (event_logs), together with one delivery per subscribed endpoint (webhook_events):
-- the outbox the delivery workers of every node drain.
CREATE TABLE webhook_endpoints (
    id                  UUID PRIMARY KEY,
    account_id          UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    product_id          UUID REFERENCES products(id) ON DELETE CASCADE,
    url                 TEXT NOT NULL,
    subscriptions       JSONB NOT NULL,
    signature_algorithm TEXT NOT NULL,
    api_version         TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_account ON webhook_endpoints (account_id);

-- Ids are UUIDv7 (time-ordered): the primary key is the log's order and inserts append.
CREATE TABLE event_logs (
    id              UUID PRIMARY KEY,
    account_id      UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    resource_type   TEXT NOT NULL,
    resource_id     UUID NOT NULL,
    whodunnit_type  TEXT,
    whodunnit_id    UUID,
    request_id      TEXT,
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      BIGINT NOT NULL
);
CREATE INDEX event_logs_by_resource ON event_logs (account_id, resource_id);

CREATE TABLE webhook_events (
    id                  UUID PRIMARY KEY,
    account_id          UUID NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    endpoint_id         UUID NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    -- The event log entry this delivers: receivers de-duplicate on it.
    event_log_id        UUID NOT NULL,
    event               TEXT NOT NULL,
    api_version         TEXT NOT NULL,
    endpoint_url        TEXT NOT NULL,
    payload             TEXT NOT NULL,
    status              TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    -- A worker's claim; a claim past its time (the node died) is taken again.
    claimed_until       BIGINT,
    last_response_code  BIGINT,
    last_response_body  TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX webhook_events_by_account ON webhook_events (account_id, created_at);
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status IN ('DELIVERING', 'FAILING');

-- Time-driven events already raised (expiring soon, expired, check-in overdue), one row per
-- occurrence, so that each fires once whichever node's job sees it first.
CREATE TABLE event_marks (
    resource_id  UUID NOT NULL,
    event        TEXT NOT NULL,
    occurrence   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (resource_id, event, occurrence)
);

-- The expiry-event scan.
CREATE INDEX licenses_by_expiry ON licenses (expiry) WHERE expiry IS NOT NULL;
