-- The memory and disk of each license's machines, summed beside the machine count and cores
-- (migration 0006) so a license shows Keygen's `machines` meta {count, cores, memory, disk}
-- without a subquery on every lookup. The machine triggers are replaced to keep all four.
-- Memory and disk are 64-bit sizes, so their sums saturate at 2^63 - 1 instead of overflowing
-- (SQLite would turn the column into a REAL); subtractions stop at 0. Only absurd totals (over
-- 8 EiB on one license) are approximate.
ALTER TABLE licenses ADD COLUMN machines_memory BIGINT NOT NULL DEFAULT 0;
ALTER TABLE licenses ADD COLUMN machines_disk BIGINT NOT NULL DEFAULT 0;

UPDATE licenses SET
    machines_memory = (SELECT CAST(MIN(TOTAL(m.memory), 9.3e18) AS INTEGER) FROM machines m WHERE m.license_id = licenses.id),
    machines_disk = (SELECT CAST(MIN(TOTAL(m.disk), 9.3e18) AS INTEGER) FROM machines m WHERE m.license_id = licenses.id);

DROP TRIGGER machines_counted_insert;
DROP TRIGGER machines_counted_delete;
DROP TRIGGER machines_counted_update;

CREATE TRIGGER machines_counted_insert AFTER INSERT ON machines BEGIN
    UPDATE licenses SET machines_count = machines_count + 1, machines_cores = machines_cores + COALESCE(NEW.cores, 0),
        machines_memory = CASE WHEN COALESCE(NEW.memory, 0) > 9223372036854775807 - machines_memory THEN 9223372036854775807 ELSE machines_memory + COALESCE(NEW.memory, 0) END,
        machines_disk = CASE WHEN COALESCE(NEW.disk, 0) > 9223372036854775807 - machines_disk THEN 9223372036854775807 ELSE machines_disk + COALESCE(NEW.disk, 0) END
    WHERE id = NEW.license_id;
END;

CREATE TRIGGER machines_counted_delete AFTER DELETE ON machines BEGIN
    UPDATE licenses SET machines_count = machines_count - 1, machines_cores = machines_cores - COALESCE(OLD.cores, 0),
        machines_memory = MAX(machines_memory - COALESCE(OLD.memory, 0), 0), machines_disk = MAX(machines_disk - COALESCE(OLD.disk, 0), 0)
    WHERE id = OLD.license_id;
END;

CREATE TRIGGER machines_counted_update AFTER UPDATE OF license_id, cores, memory, disk ON machines
WHEN OLD.license_id IS NOT NEW.license_id OR OLD.cores IS NOT NEW.cores
    OR OLD.memory IS NOT NEW.memory OR OLD.disk IS NOT NEW.disk BEGIN
    UPDATE licenses SET machines_count = machines_count - 1, machines_cores = machines_cores - COALESCE(OLD.cores, 0),
        machines_memory = MAX(machines_memory - COALESCE(OLD.memory, 0), 0), machines_disk = MAX(machines_disk - COALESCE(OLD.disk, 0), 0)
    WHERE id = OLD.license_id;
    UPDATE licenses SET machines_count = machines_count + 1, machines_cores = machines_cores + COALESCE(NEW.cores, 0),
        machines_memory = CASE WHEN COALESCE(NEW.memory, 0) > 9223372036854775807 - machines_memory THEN 9223372036854775807 ELSE machines_memory + COALESCE(NEW.memory, 0) END,
        machines_disk = CASE WHEN COALESCE(NEW.disk, 0) > 9223372036854775807 - machines_disk THEN 9223372036854775807 ELSE machines_disk + COALESCE(NEW.disk, 0) END
    WHERE id = NEW.license_id;
END;
