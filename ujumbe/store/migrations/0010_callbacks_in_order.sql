-- Callbacks of one message go in order: a callback is claimed only when no
-- earlier one of its message is still pending. This finds that earlier one.
CREATE INDEX callbacks_message_pending ON callbacks(message_id, id) WHERE status = 'pending' AND message_id IS NOT NULL;
