-- A receipt moves one part: the newest one with its id on its connector that
-- was sent before the receipt came and whose validity has not long ended.
-- SMSCs that restart count their ids from 1 again, so older namesakes exist;
-- these say when each part went out and until when a receipt can be its.
-- NULL on parts written before this migration (read as updated_at and
-- updated_at + 48 h).
ALTER TABLE message_parts ADD COLUMN sent_at BIGINT;
ALTER TABLE message_parts ADD COLUMN expires_at BIGINT;
