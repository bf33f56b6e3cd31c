-- The sweeper looks at recent early receipts every second and deletes old ones.
CREATE INDEX early_receipts_received ON early_receipts(received_at);
