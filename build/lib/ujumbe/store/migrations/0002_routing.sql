-- Operator connectors and the routes that choose between them.

CREATE TABLE connectors (
    name TEXT PRIMARY KEY,          -- also the connector recorded on message_parts: receipts match by it
    kind TEXT NOT NULL DEFAULT 'smpp',
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    system_id TEXT NOT NULL,
    -- The server must present the password to the operator, so it cannot be
    -- hashed: it is Fernet-encrypted with a key derived from the server secret.
    password_enc TEXT NOT NULL,
    system_type TEXT NOT NULL DEFAULT '',
    bind_mode TEXT NOT NULL DEFAULT 'transceiver',   -- transceiver | transmitter | receiver
    binds INTEGER NOT NULL DEFAULT 1,
    window_size INTEGER NOT NULL DEFAULT 64,         -- ("window" is reserved in PostgreSQL)
    tps DOUBLE PRECISION,                            -- NULL: no limit
    tls INTEGER NOT NULL DEFAULT 0,
    data_coding TEXT NOT NULL DEFAULT 'gsm7',        -- gsm7 | latin1
    long_messages TEXT NOT NULL DEFAULT 'udh',       -- udh | udh16 | payload | sar
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE routes (
    id {{autoid}},
    account_id TEXT REFERENCES accounts(id),        -- NULL: every account
    kind TEXT NOT NULL,                              -- prefix | network | default
    value TEXT NOT NULL DEFAULT '',                  -- '2547', 'Safaricom', '' for default
    connector TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 100,           -- lower first, the next one is the failover
    created_at BIGINT NOT NULL
);
CREATE INDEX routes_account ON routes(account_id);

-- Bumped by every change to connectors or routes, so workers in other
-- processes notice with one cheap read.
CREATE TABLE routing_version (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO routing_version (id, version) VALUES (1, 0);
