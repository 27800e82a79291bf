-- When each license was last validated, in a narrow table of its own. Every validation records
-- this (in batches, see AppState::flush_touches); rewriting the wide license row for it cost
-- about three times as much per validation as updating this table, and left a dead copy of
-- the whole license row behind each time.
--
-- Copy and drop as one step with respect to nodes still running the previous release.
LOCK TABLE licenses IN ACCESS EXCLUSIVE MODE;

CREATE TABLE license_validations (
    license_id UUID PRIMARY KEY REFERENCES licenses(id) ON DELETE CASCADE,
    at         BIGINT NOT NULL
);

INSERT INTO license_validations (license_id, at)
SELECT id, last_validated_at FROM licenses WHERE last_validated_at IS NOT NULL;

ALTER TABLE licenses DROP COLUMN last_validated_at;
