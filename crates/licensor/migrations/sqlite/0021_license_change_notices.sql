-- PostgreSQL's migration 0021 makes license changes notify every node, for the nodes' license
-- caches (src/license_cache.rs). SQLite keeps no such cache (its validations read the file in
-- process), so there is nothing to do here; the file keeps the engines' numbers in step.
SELECT 1;
