-- A campaign's pace, shared by every worker process (services/campaigns.py,
-- docs/campaigns.md): the time (microseconds since the epoch) up to which its
-- sends are already paid for at its rate. A worker advances it, in one
-- conditional UPDATE, by n/rate seconds before it sends n numbers, and never
-- past a short horizon ahead of now; so N workers together keep one rate.
ALTER TABLE campaigns ADD COLUMN paced_until_us BIGINT NOT NULL DEFAULT 0;
