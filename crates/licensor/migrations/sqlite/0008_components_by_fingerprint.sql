-- Component uniqueness wider than one machine (componentUniquenessStrategy UNIQUE_PER_LICENSE,
-- _POLICY, _PRODUCT, _ACCOUNT) looks a fingerprint up across the account's components.
CREATE INDEX components_by_fingerprint ON components (account_id, fingerprint);
