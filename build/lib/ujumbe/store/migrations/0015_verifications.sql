-- One-time codes (services/verifications.py). Only a keyed hash of a code is
-- kept, never the code.
CREATE TABLE verifications (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    prefix TEXT NOT NULL,
    channel TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    length INTEGER NOT NULL,
    status TEXT NOT NULL,               -- pending | approved | expired | canceled | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    message_id BIGINT,
    dialect TEXT NOT NULL DEFAULT 'native',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX verifications_recipient ON verifications(account_id, recipient, created_at);
CREATE INDEX verifications_prefix ON verifications(account_id, prefix, created_at);
CREATE INDEX verifications_list ON verifications(account_id, created_at);

-- The number ranges an account has sent codes to, and when first: a burst of
-- new ones is what SMS pumping looks like.
CREATE TABLE verification_prefixes (
    account_id TEXT NOT NULL,
    prefix TEXT NOT NULL,
    first_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, prefix)
);
CREATE INDEX verification_prefixes_recent ON verification_prefixes(account_id, first_at);

-- Codes the guard refused, kept for the account to see (and the operator).
CREATE TABLE verification_refusals (
    id {{autoid}},
    account_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    prefix TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX verification_refusals_account ON verification_refusals(account_id, id);

-- Per-account overrides of the code limits (JSON of core.otp.Limits fields).
CREATE TABLE verification_settings (
    account_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
