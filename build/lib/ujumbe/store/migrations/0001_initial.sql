-- One schema for SQLite and PostgreSQL. {{autoid}} becomes the backend's
-- auto-increment primary key. Times are epoch milliseconds; money is in
-- ten-thousandths of the account's currency unit (see core/pricing.py).

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    region TEXT NOT NULL DEFAULT 'KE',
    instance_id TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL UNIQUE,
    -- private keys and webhook secrets are derived from the server secret and
    -- this seed, so no usable secret is stored in the database
    key_seed TEXT NOT NULL,
    balance BIGINT NOT NULL DEFAULT 0,
    dlr_url TEXT,
    inbound_url TEXT,
    subscription_url TEXT,
    max_chars INTEGER NOT NULL DEFAULT 920,
    active INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    prefix TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE templates (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    key TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT 'sms',
    body TEXT NOT NULL,
    subject TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, key, channel)
);

CREATE TABLE prices (
    network TEXT NOT NULL,          -- carrier name, or '*' for the default
    channel TEXT NOT NULL DEFAULT 'sms',
    price BIGINT NOT NULL,          -- per part
    PRIMARY KEY (network, channel)
);

CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    reference TEXT,                 -- the client's idempotency key
    dialect TEXT NOT NULL,
    channel TEXT NOT NULL,
    sender TEXT,
    template_key TEXT,
    callback_url TEXT,
    recipients INTEGER NOT NULL,
    accepted INTEGER NOT NULL,
    cost BIGINT NOT NULL,
    meta TEXT,                      -- JSON the dialect keeps (extraData, smsType, ...)
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, reference)
);

CREATE TABLE messages (
    id BIGINT PRIMARY KEY,
    request_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    dialect TEXT NOT NULL,
    sender TEXT,
    recipient TEXT NOT NULL,
    network TEXT,
    body TEXT NOT NULL,
    encoding TEXT NOT NULL,
    parts INTEGER NOT NULL,
    cost BIGINT NOT NULL,
    charge TEXT NOT NULL,           -- none | reserved | settled | refunded
    state TEXT NOT NULL,
    error_code TEXT,
    error_reason TEXT,
    connector TEXT,
    callback_url TEXT,
    meta TEXT,
    created_at BIGINT NOT NULL,
    submitted_at BIGINT,
    done_at BIGINT,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX messages_account ON messages(account_id, id);
CREATE INDEX messages_request ON messages(request_id);
CREATE INDEX messages_open ON messages(expires_at) WHERE state IN ('queued', 'submitted', 'accepted');

-- Message ids are small integers (clients such as Tilil's expect numbers).
-- PostgreSQL hands out blocks from a sequence; SQLite's single writer counts.
--pg: CREATE SEQUENCE message_ids;

CREATE TABLE message_parts (
    message_id BIGINT NOT NULL,
    part INTEGER NOT NULL,
    operator_id TEXT NOT NULL,
    connector TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, part)
);
CREATE INDEX message_parts_operator ON message_parts(operator_id);

CREATE TABLE message_events (
    message_id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX message_events_message ON message_events(message_id);

-- Receipts that arrived before we recorded the submit they belong to.
CREATE TABLE early_receipts (
    operator_id TEXT NOT NULL,
    connector TEXT NOT NULL,
    state TEXT NOT NULL,
    at BIGINT NOT NULL,
    error_code TEXT,
    reason TEXT,
    received_at BIGINT NOT NULL
);
CREATE INDEX early_receipts_operator ON early_receipts(operator_id);

-- The dispatch queue. A claim pushes due_at forward by the lease, so a
-- worker that dies simply lets its rows fall due again.
CREATE TABLE outbox (
    message_id BIGINT PRIMARY KEY,
    due_at BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT
);
CREATE INDEX outbox_due ON outbox(due_at);
CREATE INDEX outbox_owner ON outbox(lease_owner);

CREATE TABLE callbacks (
    id {{autoid}},
    account_id TEXT NOT NULL,
    message_id BIGINT,
    kind TEXT NOT NULL,             -- dlr | inbound | subscription
    dialect TEXT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,           -- pending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at BIGINT NOT NULL,
    lease_owner TEXT,
    last_status INTEGER,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX callbacks_due ON callbacks(due_at) WHERE status = 'pending';
CREATE INDEX callbacks_account ON callbacks(account_id, id);

CREATE TABLE ledger (
    id {{autoid}},
    account_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,             -- topup | charge | refund | adjust
    amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    request_id TEXT,
    message_id BIGINT,
    note TEXT
);
CREATE INDEX ledger_account ON ledger(account_id, id);

-- Short codes and long numbers that receive inbound messages for an account.
CREATE TABLE numbers (
    number TEXT PRIMARY KEY,
    account_id TEXT REFERENCES accounts(id),
    kind TEXT NOT NULL DEFAULT 'shortcode',
    dialect TEXT NOT NULL DEFAULT 'native',  -- the format inbound messages are forwarded in
    created_at BIGINT NOT NULL
);

CREATE TABLE inbound (
    id {{autoid}},
    account_id TEXT,
    channel TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    body TEXT NOT NULL,
    network TEXT,
    link_id TEXT,
    meta TEXT,
    received_at BIGINT NOT NULL
);
CREATE INDEX inbound_account ON inbound(account_id, id);
