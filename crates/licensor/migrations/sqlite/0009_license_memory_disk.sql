-- The memory and disk of each license's machines, summed beside the machine count and cores
-- (migration 0006) so a license shows Keygen's `machines` meta {count, cores, memory, disk}
-- without a subquery on every lookup. The machine triggers are replaced to keep all four.
ALTER TABLE licenses ADD COLUMN machines_memory BIGINT NOT NULL DEFAULT 0;
ALTER TABLE licenses ADD COLUMN machines_disk BIGINT NOT NULL DEFAULT 0;

UPDATE licenses SET
    machines_memory = (SELECT COALESCE(SUM(m.memory), 0) FROM machines m WHERE m.license_id = licenses.id),
    machines_disk = (SELECT COALESCE(SUM(m.disk), 0) FROM machines m WHERE m.license_id = licenses.id);

DROP TRIGGER machines_counted_insert;
DROP TRIGGER machines_counted_delete;
DROP TRIGGER machines_counted_update;

CREATE TRIGGER machines_counted_insert AFTER INSERT ON machines BEGIN
    UPDATE licenses SET machines_count = machines_count + 1, machines_cores = machines_cores + COALESCE(NEW.cores, 0),
        machines_memory = machines_memory + COALESCE(NEW.memory, 0), machines_disk = machines_disk + COALESCE(NEW.disk, 0)
    WHERE id = NEW.license_id;
END;

CREATE TRIGGER machines_counted_delete AFTER DELETE ON machines BEGIN
    UPDATE licenses SET machines_count = machines_count - 1, machines_cores = machines_cores - COALESCE(OLD.cores, 0),
        machines_memory = machines_memory - COALESCE(OLD.memory, 0), machines_disk = machines_disk - COALESCE(OLD.disk, 0)
    WHERE id = OLD.license_id;
END;

CREATE TRIGGER machines_counted_update AFTER UPDATE OF license_id, cores, memory, disk ON machines
WHEN OLD.license_id IS NOT NEW.license_id OR OLD.cores IS NOT NEW.cores
    OR OLD.memory IS NOT NEW.memory OR OLD.disk IS NOT NEW.disk BEGIN
    UPDATE licenses SET machines_count = machines_count - 1, machines_cores = machines_cores - COALESCE(OLD.cores, 0),
        machines_memory = machines_memory - COALESCE(OLD.memory, 0), machines_disk = machines_disk - COALESCE(OLD.disk, 0)
    WHERE id = OLD.license_id;
    UPDATE licenses SET machines_count = machines_count + 1, machines_cores = machines_cores + COALESCE(NEW.cores, 0),
        machines_memory = machines_memory + COALESCE(NEW.memory, 0), machines_disk = machines_disk + COALESCE(NEW.disk, 0)
    WHERE id = NEW.license_id;
END;
