-- Validations on SQLite read licenses from each node's cache too (src/license_cache.rs). SQLite
-- has no LISTEN/NOTIFY, and several `licensor serve` processes may share one file, so every
-- change to what a cached row holds is written here instead, in the changing transaction: each
-- node reads what was added since it last looked (store::license_notices) and drops those
-- licenses. The payloads are PostgreSQL's (migration 0021): 'license <id>' or 'all'. Single
-- writer: `seq` follows commit order, and AUTOINCREMENT never reuses one, so a node that finds
-- a hole in the numbers knows that notices were pruned before it read them.
CREATE TABLE license_notices (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL
);

-- Every column, so that a row-locking no-op (`SET updated_at = updated_at`) notifies nothing
-- while any real change does (PostgreSQL: `OLD.* IS DISTINCT FROM NEW.*`). A column added
-- later must be added here: tests/api/migrations.rs checks that none is missing.
CREATE TRIGGER licenses_noticed AFTER UPDATE ON licenses FOR EACH ROW
WHEN (OLD.id, OLD.account_id, OLD.product_id, OLD.policy_id, OLD.owner_id, OLD.group_id, OLD.key, OLD.name,
      OLD.expiry, OLD.suspended, OLD.protected, OLD.uses, OLD.max_machines, OLD.max_processes, OLD.max_users,
      OLD.max_cores, OLD.max_uses, OLD.max_memory, OLD.max_disk, OLD.last_check_out_at, OLD.last_check_in_at,
      OLD.metadata, OLD.created_at, OLD.updated_at, OLD.machines_count, OLD.machines_cores, OLD.users_count,
      OLD.machines_memory, OLD.machines_disk)
  IS NOT (NEW.id, NEW.account_id, NEW.product_id, NEW.policy_id, NEW.owner_id, NEW.group_id, NEW.key, NEW.name,
      NEW.expiry, NEW.suspended, NEW.protected, NEW.uses, NEW.max_machines, NEW.max_processes, NEW.max_users,
      NEW.max_cores, NEW.max_uses, NEW.max_memory, NEW.max_disk, NEW.last_check_out_at, NEW.last_check_in_at,
      NEW.metadata, NEW.created_at, NEW.updated_at, NEW.machines_count, NEW.machines_cores, NEW.users_count,
      NEW.machines_memory, NEW.machines_disk)
BEGIN
    INSERT INTO license_notices (payload) VALUES ('license ' || lower(hex(OLD.id)));
END;

CREATE TRIGGER licenses_noticed_delete AFTER DELETE ON licenses FOR EACH ROW BEGIN
    INSERT INTO license_notices (payload) VALUES ('license ' || lower(hex(OLD.id)));
END;

CREATE TRIGGER policies_noticed AFTER UPDATE OF rules ON policies FOR EACH ROW WHEN OLD.rules IS NOT NEW.rules BEGIN
    INSERT INTO license_notices (payload) VALUES ('all');
END;

CREATE TRIGGER users_noticed AFTER UPDATE OF banned_at ON users FOR EACH ROW WHEN OLD.banned_at IS NOT NEW.banned_at BEGIN
    INSERT INTO license_notices (payload) VALUES ('all');
END;

-- A machine's change that moves no counter on its license (a heartbeat, a fingerprint, an
-- owner) still changes what a scoped validation reads of that license. Every column, as above.
CREATE TRIGGER machines_noticed AFTER UPDATE ON machines FOR EACH ROW
WHEN (OLD.id, OLD.account_id, OLD.license_id, OLD.fingerprint, OLD.name, OLD.ip, OLD.hostname, OLD.platform,
      OLD.cores, OLD.memory, OLD.disk, OLD.owner_id, OLD.group_id, OLD.max_processes, OLD.last_heartbeat_at,
      OLD.last_check_out_at, OLD.metadata, OLD.created_at, OLD.updated_at)
  IS NOT (NEW.id, NEW.account_id, NEW.license_id, NEW.fingerprint, NEW.name, NEW.ip, NEW.hostname, NEW.platform,
      NEW.cores, NEW.memory, NEW.disk, NEW.owner_id, NEW.group_id, NEW.max_processes, NEW.last_heartbeat_at,
      NEW.last_check_out_at, NEW.metadata, NEW.created_at, NEW.updated_at)
BEGIN
    INSERT INTO license_notices (payload) VALUES ('license ' || lower(hex(NEW.license_id)));
    INSERT INTO license_notices (payload) SELECT 'license ' || lower(hex(OLD.license_id))
        WHERE OLD.license_id IS NOT NEW.license_id;
END;
