-- Email as a channel (docs/email.md).

-- An account's sending domains: a message's From must be at one of them. The
-- operator adds a domain (CLI or admin API), which generates its DKIM key;
-- the private key is Fernet-encrypted with a key derived from the server
-- secret (services/sealing.py), since the server must read it back to sign.
CREATE TABLE sending_domains (
    domain TEXT PRIMARY KEY,               -- lower case, IDNA form; one account owns a domain
    account_id TEXT NOT NULL REFERENCES accounts(id),
    selector TEXT NOT NULL,                -- the DKIM selector: <selector>._domainkey.<domain>
    private_key_enc TEXT NOT NULL,         -- PKCS#8 PEM, sealed
    public_key TEXT NOT NULL,              -- base64 DER SubjectPublicKeyInfo: the DNS record's p=
    created_at BIGINT NOT NULL
);
CREATE INDEX sending_domains_account ON sending_domains(account_id);

-- Kind-specific connector settings as JSON (smtp: starttls, verify, ...).
ALTER TABLE connectors ADD COLUMN options TEXT;
