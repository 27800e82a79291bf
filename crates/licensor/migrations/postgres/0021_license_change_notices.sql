-- Validations on PostgreSQL read licenses from each node's cache (src/license_cache.rs). Every
-- change to what a cached row holds tells every node, in the changing transaction (so after it
-- commits, in commit order), which license to drop: a license row itself (its machine and user
-- counters too, which their own triggers keep on it) or one of its machines, or, for everything
-- at once, a policy's rules or an owner's ban. Deletions of policies and users reach the licenses by their cascades.
CREATE FUNCTION licensor_license_changed() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify('licensor_licenses', 'license ' || OLD.id::text);
    RETURN NULL;
END $$;

CREATE FUNCTION licensor_licenses_changed() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify('licensor_licenses', 'all');
    RETURN NULL;
END $$;

-- A no-op UPDATE (a row lock taken as `SET updated_at = updated_at`) changes nothing cached.
CREATE TRIGGER licenses_noticed AFTER UPDATE ON licenses FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION licensor_license_changed();
CREATE TRIGGER licenses_noticed_delete AFTER DELETE ON licenses FOR EACH ROW
    EXECUTE FUNCTION licensor_license_changed();
CREATE TRIGGER policies_noticed AFTER UPDATE ON policies FOR EACH ROW
    WHEN (OLD.rules IS DISTINCT FROM NEW.rules) EXECUTE FUNCTION licensor_licenses_changed();
CREATE TRIGGER users_noticed AFTER UPDATE ON users FOR EACH ROW
    WHEN (OLD.banned_at IS DISTINCT FROM NEW.banned_at) EXECUTE FUNCTION licensor_licenses_changed();
-- A machine's change that moves no counter on its license (a heartbeat, a fingerprint, an
-- owner) still changes what a scoped validation reads of that license.
CREATE FUNCTION licensor_machine_changed() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify('licensor_licenses', 'license ' || NEW.license_id::text);
    IF OLD.license_id IS DISTINCT FROM NEW.license_id THEN
        PERFORM pg_notify('licensor_licenses', 'license ' || OLD.license_id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER machines_noticed AFTER UPDATE ON machines FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION licensor_machine_changed();
-- TRUNCATE fires no row trigger.
CREATE TRIGGER licenses_noticed_truncate AFTER TRUNCATE ON licenses
    FOR EACH STATEMENT EXECUTE FUNCTION licensor_licenses_changed();
CREATE TRIGGER policies_noticed_truncate AFTER TRUNCATE ON policies
    FOR EACH STATEMENT EXECUTE FUNCTION licensor_licenses_changed();
CREATE TRIGGER users_noticed_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION licensor_licenses_changed();
CREATE TRIGGER machines_noticed_truncate AFTER TRUNCATE ON machines
    FOR EACH STATEMENT EXECUTE FUNCTION licensor_licenses_changed();
