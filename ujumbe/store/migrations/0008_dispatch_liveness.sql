-- Dispatch workers say they are alive. Each one bumps its beat_at every second
-- or so; another worker that sees a beat unchanged for a few seconds (by its
-- own clock: values are compared, never clocks) takes that worker's leased
-- outbox rows back at once, instead of waiting for the leases to run out.
CREATE TABLE dispatch_workers (
    owner TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    beat_at BIGINT NOT NULL
);

-- Set while a message waits for a bind (no connector of its route is up):
-- waiting is not a try, and such rows fall due at once when a bind comes up.
ALTER TABLE outbox ADD COLUMN waiting_since BIGINT;
CREATE INDEX outbox_waiting ON outbox(waiting_since) WHERE waiting_since IS NOT NULL;
