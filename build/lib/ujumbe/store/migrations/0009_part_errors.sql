-- Each part keeps the error its receipt gave: a multi-part message ends as its
-- worst part did, and its error must be that part's even when the last
-- receipt to arrive (the one that makes it final) is another part's DELIVRD.
ALTER TABLE message_parts ADD COLUMN error_code TEXT;
ALTER TABLE message_parts ADD COLUMN error_reason TEXT;
