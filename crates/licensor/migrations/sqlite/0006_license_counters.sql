-- Machine, core and user counts of each license, read by every license lookup (validation's
-- hot path) instead of three correlated subqueries. Triggers keep them in the transaction that
-- changes machines or license users, so they are exact whichever code path writes.
ALTER TABLE licenses ADD COLUMN machines_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE licenses ADD COLUMN machines_cores BIGINT NOT NULL DEFAULT 0;
ALTER TABLE licenses ADD COLUMN users_count BIGINT NOT NULL DEFAULT 0;

UPDATE licenses SET
    machines_count = (SELECT COUNT(*) FROM machines m WHERE m.license_id = licenses.id),
    machines_cores = (SELECT COALESCE(SUM(m.cores), 0) FROM machines m WHERE m.license_id = licenses.id),
    users_count = (SELECT COUNT(*) FROM license_users lu WHERE lu.license_id = licenses.id);

CREATE TRIGGER machines_counted_insert AFTER INSERT ON machines BEGIN
    UPDATE licenses SET machines_count = machines_count + 1, machines_cores = machines_cores + COALESCE(NEW.cores, 0)
    WHERE id = NEW.license_id;
END;

CREATE TRIGGER machines_counted_delete AFTER DELETE ON machines BEGIN
    UPDATE licenses SET machines_count = machines_count - 1, machines_cores = machines_cores - COALESCE(OLD.cores, 0)
    WHERE id = OLD.license_id;
END;

CREATE TRIGGER machines_counted_update AFTER UPDATE OF license_id, cores ON machines
WHEN OLD.license_id IS NOT NEW.license_id OR OLD.cores IS NOT NEW.cores BEGIN
    UPDATE licenses SET machines_count = machines_count - 1, machines_cores = machines_cores - COALESCE(OLD.cores, 0)
    WHERE id = OLD.license_id;
    UPDATE licenses SET machines_count = machines_count + 1, machines_cores = machines_cores + COALESCE(NEW.cores, 0)
    WHERE id = NEW.license_id;
END;

CREATE TRIGGER license_users_counted_insert AFTER INSERT ON license_users BEGIN
    UPDATE licenses SET users_count = users_count + 1 WHERE id = NEW.license_id;
END;

CREATE TRIGGER license_users_counted_delete AFTER DELETE ON license_users BEGIN
    UPDATE licenses SET users_count = users_count - 1 WHERE id = OLD.license_id;
END;
