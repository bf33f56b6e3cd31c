-- The web dashboard (ujumbe/http/dashboard).
--
-- Its sessions live on the server, so logging out or suspending an account
-- ends them at once; only the SHA-256 of the cookie's token is stored.
CREATE TABLE dashboard_sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT,                -- NULL for the operator's (admin) session
    admin INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions(expires_at);

-- Today at a glance reads only the window it shows (created_at never changes,
-- so a send writes this index once and a receipt never touches it).
CREATE INDEX messages_account_created ON messages(account_id, created_at);
-- Searching an account's messages by number, newest first, without a scan.
CREATE INDEX messages_account_recipient ON messages(account_id, recipient, id);
-- Failed callbacks (to retry) without walking every delivered one; the index
-- is touched only when a callback is given up on.
CREATE INDEX callbacks_account_failed ON callbacks(account_id, id) WHERE status = 'failed';
