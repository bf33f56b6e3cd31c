-- SMPP credentials: customers bind to Ujumbe's SMPP server with these.
-- One set per account; the password is an argon2 hash (SMPP 3.4 passwords
-- are at most 8 characters, so a fast hash would be trivial to reverse).
CREATE TABLE smpp_credentials (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id),
    system_id TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    max_binds INTEGER NOT NULL DEFAULT 2,
    tps DOUBLE PRECISION,                       -- submits per second over all binds, NULL for unlimited
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Receipts and inbound messages waiting for an SMPP customer's receiver bind
-- are found by URL when the customer binds again.
CREATE INDEX callbacks_url_pending ON callbacks(url) WHERE status = 'pending';
