-- The memory and disk of each license's machines, summed beside the machine count and cores
-- (migration 0006) so a license shows Keygen's `machines` meta {count, cores, memory, disk}
-- without a subquery on every lookup. The machine trigger function is replaced to keep all
-- four; machine changes by nodes of the previous release wait until it is in place. Memory
-- and disk are 64-bit sizes, so their sums saturate at 2^63 - 1 instead of failing the write
-- with "bigint out of range"; subtractions stop at 0.
LOCK TABLE machines IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE licenses
    ADD COLUMN machines_memory BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN machines_disk BIGINT NOT NULL DEFAULT 0;

UPDATE licenses SET
    machines_memory = (SELECT LEAST(COALESCE(SUM(m.memory), 0), 9223372036854775807) FROM machines m WHERE m.license_id = licenses.id),
    machines_disk = (SELECT LEAST(COALESCE(SUM(m.disk), 0), 9223372036854775807) FROM machines m WHERE m.license_id = licenses.id);

CREATE OR REPLACE FUNCTION licensor_count_machines() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE licenses SET machines_count = machines_count - 1, machines_cores = machines_cores - COALESCE(OLD.cores, 0),
            machines_memory = GREATEST(machines_memory - COALESCE(OLD.memory, 0), 0), machines_disk = GREATEST(machines_disk - COALESCE(OLD.disk, 0), 0)
        WHERE id = OLD.license_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE licenses SET machines_count = machines_count + 1, machines_cores = machines_cores + COALESCE(NEW.cores, 0),
            machines_memory = LEAST(machines_memory::numeric + COALESCE(NEW.memory, 0), 9223372036854775807)::bigint,
            machines_disk = LEAST(machines_disk::numeric + COALESCE(NEW.disk, 0), 9223372036854775807)::bigint
        WHERE id = NEW.license_id;
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER machines_counted_update ON machines;
CREATE TRIGGER machines_counted_update AFTER UPDATE OF license_id, cores, memory, disk ON machines
    FOR EACH ROW WHEN (OLD.license_id IS DISTINCT FROM NEW.license_id OR OLD.cores IS DISTINCT FROM NEW.cores
        OR OLD.memory IS DISTINCT FROM NEW.memory OR OLD.disk IS DISTINCT FROM NEW.disk)
    EXECUTE FUNCTION licensor_count_machines();
