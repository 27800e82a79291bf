-- What the other API surfaces need beyond the core model.

-- OPSWAT-style activation finds a license by its key alone (no account in the URL).
CREATE INDEX licenses_key ON licenses(key);

-- The Astra-style surface keeps a client-submitted licenseText byte for byte (its signature
-- covers those exact bytes) and the resource's labels. Licenses created elsewhere have no row
-- here; their licenseText is rendered from the core row on read.
CREATE TABLE astra_licenses (
    license_id    BLOB PRIMARY KEY REFERENCES licenses(id) ON DELETE CASCADE,
    account_id    BLOB NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    license_text  TEXT,
    labels        TEXT NOT NULL DEFAULT '[]',
    created_by    TEXT,
    modified_by   TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
