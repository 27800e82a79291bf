-- Machines of one license, oldest first: what every scoped validation reads. Without it
-- SQLite's planner takes the (account_id, fingerprint) index for `account_id = ? AND
-- license_id = ?` and scans every machine of the account.
CREATE INDEX machines_license_created ON machines(license_id, created_at);
