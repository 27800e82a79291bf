-- The console's overview counts machines activated per day, and lists page by creation time:
-- both read machines of one account by creation time.
CREATE INDEX machines_account_created ON machines(account_id, created_at);
