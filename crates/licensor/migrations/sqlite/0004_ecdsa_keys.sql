-- Accounts gain an ECDSA P-256 key pair (for the ECDSA_P256_SIGN scheme and ecdsa-p256
-- signatures). Existing accounts get theirs at the next start (bootstrap::ensure_keys).
ALTER TABLE accounts ADD COLUMN ecdsa_public TEXT;
ALTER TABLE accounts ADD COLUMN ecdsa_secret BLOB;
