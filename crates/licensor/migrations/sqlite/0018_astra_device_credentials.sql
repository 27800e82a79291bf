-- core/v1: the deviceCredentialID a license was created or replaced with (an Astra
-- identifier), stored and shown back (seed 003).
ALTER TABLE astra_licenses ADD COLUMN device_credential_id TEXT;
