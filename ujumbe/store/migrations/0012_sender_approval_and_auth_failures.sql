-- Sender names are granted by the operator: a tenant's own registration is a
-- request ('pending') the operator approves or rejects. Rows from before this
-- were usable at once, so they start out 'approved'.
ALTER TABLE senders ADD COLUMN status TEXT NOT NULL DEFAULT 'approved';
ALTER TABLE senders ADD COLUMN decided_at BIGINT;
ALTER TABLE senders ADD COLUMN reason TEXT;

-- Before this two accounts could both hold one name. The earliest registration
-- keeps it; the later ones go back to 'pending' for the operator to decide, so
-- that the unique index below can hold.
UPDATE senders SET status = 'pending' WHERE EXISTS (
    SELECT 1 FROM senders s2 WHERE lower(s2.name) = lower(senders.name) AND s2.account_id <> senders.account_id
    AND (s2.created_at < senders.created_at OR (s2.created_at = senders.created_at AND s2.account_id < senders.account_id))
);

-- One account at most holds an approved name (compared without case: AlphaCo
-- and ALPHACO look the same to a subscriber).
CREATE UNIQUE INDEX senders_approved_name ON senders (lower(name)) WHERE status = 'approved';
CREATE INDEX senders_by_name ON senders (lower(name));

-- Failed authentications (logins, API keys, the admin token), counted per key
-- (an account, a client address) in a fixed window so that every process
-- sharing the database shares the count. A row whose window has passed
-- counts for nothing and is swept.
CREATE TABLE auth_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX auth_failures_expiry ON auth_failures (expires_at);
