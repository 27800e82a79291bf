-- Machine, core and user counts of each license, read by every license lookup (validation's
-- hot path) instead of three correlated subqueries. Triggers keep them in the transaction that
-- changes machines or license users, so they are exact whichever code path writes. Activation
-- already holds the license row, so the trigger's update adds no lock it did not have; paths
-- that delete machines or users lock the license first, in the same order.
--
-- Nodes of the previous release may still be running: block their machine and user changes
-- until the triggers exist, so none lands between the backfill and the first trigger.
LOCK TABLE machines, license_users IN SHARE ROW EXCLUSIVE MODE;

ALTER TABLE licenses
    ADD COLUMN machines_count BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN machines_cores BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN users_count BIGINT NOT NULL DEFAULT 0;

UPDATE licenses SET
    machines_count = (SELECT COUNT(*) FROM machines m WHERE m.license_id = licenses.id),
    machines_cores = (SELECT COALESCE(SUM(m.cores), 0) FROM machines m WHERE m.license_id = licenses.id),
    users_count = (SELECT COUNT(*) FROM license_users lu WHERE lu.license_id = licenses.id);

-- The functions keep the schema they were created in (`--database-schema`), whatever the
-- search_path of the session that fires them.
CREATE FUNCTION licensor_count_machines() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE licenses SET machines_count = machines_count - 1, machines_cores = machines_cores - COALESCE(OLD.cores, 0)
        WHERE id = OLD.license_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE licenses SET machines_count = machines_count + 1, machines_cores = machines_cores + COALESCE(NEW.cores, 0)
        WHERE id = NEW.license_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER machines_counted AFTER INSERT OR DELETE ON machines
    FOR EACH ROW EXECUTE FUNCTION licensor_count_machines();
CREATE TRIGGER machines_counted_update AFTER UPDATE OF license_id, cores ON machines
    FOR EACH ROW WHEN (OLD.license_id IS DISTINCT FROM NEW.license_id OR OLD.cores IS DISTINCT FROM NEW.cores)
    EXECUTE FUNCTION licensor_count_machines();

CREATE FUNCTION licensor_count_license_users() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE licenses SET users_count = users_count - 1 WHERE id = OLD.license_id;
    ELSE
        UPDATE licenses SET users_count = users_count + 1 WHERE id = NEW.license_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER license_users_counted AFTER INSERT OR DELETE ON license_users
    FOR EACH ROW EXECUTE FUNCTION licensor_count_license_users();
