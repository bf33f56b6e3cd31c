-- Each attempt at delivering a callback, kept on its own (the callbacks row
-- keeps only the count and the last answer): when, the HTTP status or the
-- error, how long it took, the start of the answer, and where it went with
-- any password or secret query value masked. Written by the callback worker,
-- one row per attempt in the batch it records its results in.
CREATE TABLE callback_attempts (
    id {{autoid}},
    callback_id BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    message_id BIGINT,
    at BIGINT NOT NULL,
    http_status INTEGER,
    error TEXT,
    latency_ms INTEGER NOT NULL,
    response TEXT,
    url TEXT NOT NULL
);
-- A callback's attempts in order (the message page, the exchanges), and its
-- purge with the callback.
CREATE INDEX callback_attempts_callback ON callback_attempts(callback_id, id);
-- Purged with their message (retention).
CREATE INDEX callback_attempts_message ON callback_attempts(message_id) WHERE message_id IS NOT NULL;
