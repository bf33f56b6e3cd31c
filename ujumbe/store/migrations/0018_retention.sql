-- Retention (workers/retention.py): what is left of messages once purged.
-- One row per UTC day (of acceptance), account, channel, network and final
-- state; purging a batch adds its messages to these totals in the same
-- transaction, so reports still add up to everything ever sent.
CREATE TABLE message_daily (
    day TEXT NOT NULL,              -- YYYY-MM-DD, UTC
    account_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    network TEXT NOT NULL,          -- '' when unknown
    state TEXT NOT NULL,
    messages BIGINT NOT NULL,       -- messages purged into this row (Tilil's "MessagePurged")
    parts BIGINT NOT NULL,
    cost BIGINT NOT NULL,           -- ten-thousandths, as messages.cost
    PRIMARY KEY (day, account_id, channel, network, state)
);
CREATE INDEX message_daily_account ON message_daily(account_id, day);
