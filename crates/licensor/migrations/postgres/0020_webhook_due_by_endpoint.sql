-- Due deliveries are claimed endpoint by endpoint, each endpoint's soonest first: an endpoint
-- that already holds its most no longer has its whole backlog walked by every claim (the
-- index by time alone had to step over it to reach other endpoints' deliveries).
CREATE INDEX webhook_events_due_by_endpoint ON webhook_events (endpoint_id, next_attempt_at)
    WHERE status IN ('DELIVERING', 'FAILING');
DROP INDEX webhook_events_due;
