-- Less index upkeep for every message the workers move.
--
-- messages_open held the open messages by naming their states, so every
-- change of state (queued -> submitted, on every message) rewrote its entry
-- (an index is kept up wherever its predicate's columns change; on
-- PostgreSQL such an update cannot be HOT either). A message is open exactly
-- while done_at is NULL (set with every final state, at accept for a
-- rejected one), which only the final update changes: one removal.
DROP INDEX messages_open;
CREATE INDEX messages_open ON messages(expires_at) WHERE done_at IS NULL;

-- callbacks_url_pending served only CallbackLog.due_now (an SMPP customer
-- bound: its pending deliveries go now), which reads the pending callbacks
-- through callbacks_due instead; it cost an entry per callback queued and
-- its removal per callback delivered.
DROP INDEX callbacks_url_pending;

-- callbacks_message_pending (pending ones only, for the claim's "no earlier
-- one of its message pending") lost its entry at every delivery; every
-- callback of the message instead: the claim reads the one or two earlier
-- ones' rows, and a message's page and exchanges find its callbacks by it
-- rather than by walking all of the account's.
DROP INDEX callbacks_message_pending;
CREATE INDEX callbacks_message ON callbacks(message_id, id) WHERE message_id IS NOT NULL;

-- callback_attempts_message (0022) served only retention, which purges a
-- message's attempts through its callbacks (callbacks_message, then
-- callback_attempts_callback): an entry fewer per attempt recorded.
DROP INDEX callback_attempts_message;

-- On SQLite a table with a composite primary key is a rowid B-tree plus a
-- unique index on the key: each part written went into both, and each
-- receipt's update found the row through the index, then the rowid. Without
-- a rowid the key is the table. PostgreSQL keeps its table.
--sqlite: CREATE TABLE message_parts_0027 (
--sqlite:     message_id BIGINT NOT NULL,
--sqlite:     part INTEGER NOT NULL,
--sqlite:     operator_id TEXT NOT NULL,
--sqlite:     connector TEXT NOT NULL,
--sqlite:     state TEXT NOT NULL,
--sqlite:     updated_at BIGINT NOT NULL,
--sqlite:     sent_at BIGINT,
--sqlite:     expires_at BIGINT,
--sqlite:     error_code TEXT,
--sqlite:     error_reason TEXT,
--sqlite:     PRIMARY KEY (message_id, part)
--sqlite: ) WITHOUT ROWID;
--sqlite: INSERT INTO message_parts_0027 (message_id, part, operator_id, connector, state, updated_at, sent_at,
--sqlite:     expires_at, error_code, error_reason)
--sqlite:   SELECT message_id, part, operator_id, connector, state, updated_at, sent_at, expires_at, error_code,
--sqlite:     error_reason FROM message_parts;
--sqlite: DROP TABLE message_parts;
--sqlite: ALTER TABLE message_parts_0027 RENAME TO message_parts;
--sqlite: CREATE INDEX message_parts_operator ON message_parts(operator_id);
