-- Premium services' api_token, encrypted at rest (Fernet with a key derived
-- from the server secret, as SMPP connector passwords are). The plaintext
-- column stays for rows written before this migration: at start the server
-- seals them into api_token_enc and clears api_token, in batches.
ALTER TABLE premium_services ADD COLUMN api_token_enc TEXT;
