-- Campaigns (services/campaigns.py): numbers with tags, sent at a pace, with
-- credits held up front and settled per number; jobs for imports and reports.

-- An account's own time zone (IANA name); NULL: its region's.
ALTER TABLE accounts ADD COLUMN time_zone TEXT;
-- Which campaign a hold or a release of credits belongs to.
ALTER TABLE ledger ADD COLUMN campaign_id BIGINT;

CREATE TABLE campaigns (
    id {{autoid}},
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    services TEXT NOT NULL,            -- SMS | PHONE | SMS,PHONE
    message TEXT,
    sender TEXT,
    audio TEXT,
    voice TEXT,
    length_factor TEXT,
    usable_tags TEXT NOT NULL DEFAULT '[]',  -- JSON list
    status TEXT NOT NULL DEFAULT 'not started',  -- not started | scheduled | running | paused | completed | terminated
    rate INTEGER NOT NULL DEFAULT 0,   -- messages per second; 0: the server's default
    schedule_at BIGINT,
    run_message TEXT,                  -- the text of the current run (begin may give a new one)
    held BIGINT NOT NULL DEFAULT 0,    -- credits on hold for numbers not sent yet
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX campaigns_account ON campaigns(account_id, id);
CREATE INDEX campaigns_status ON campaigns(status);

CREATE TABLE campaign_numbers (
    id {{autoid}},
    campaign_id BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    number TEXT NOT NULL,              -- E.164 digits
    network TEXT,
    tags TEXT NOT NULL DEFAULT '{}',   -- JSON object
    status TEXT NOT NULL DEFAULT 'not started',
    held BIGINT NOT NULL DEFAULT 0,    -- on hold for this number's next message
    credit_consumed BIGINT NOT NULL DEFAULT 0,
    message_id BIGINT,
    error TEXT,
    duration INTEGER,
    playback TEXT,
    lease_until BIGINT,                -- claimed by a worker for sending until then
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX campaign_numbers_number ON campaign_numbers(campaign_id, number);
CREATE INDEX campaign_numbers_status ON campaign_numbers(campaign_id, status, id);
CREATE INDEX campaign_numbers_running ON campaign_numbers(status, message_id);

CREATE TABLE jobs (
    id {{autoid}},
    account_id TEXT NOT NULL,
    kind TEXT NOT NULL,                -- import | report
    campaign_id BIGINT,
    status TEXT NOT NULL,              -- queued | running | done | failed
    total INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    params TEXT,                       -- JSON
    result TEXT,                       -- JSON
    error TEXT,
    lease_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_account ON jobs(account_id, id);
CREATE INDEX jobs_status ON jobs(status, id);

-- Files of a job: the upload it imports, the reports it wrote.
--sqlite: CREATE TABLE job_files (job_id BIGINT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (job_id, name));
--pg: CREATE TABLE job_files (job_id BIGINT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (job_id, name));

-- The phone-number inventory: numbers the operator stocks, which accounts
-- buy (charged the rate) and release. A bought number is also in `numbers`,
-- so its inbound messages reach its owner.
CREATE TABLE phone_numbers (
    sid TEXT PRIMARY KEY,
    number TEXT NOT NULL UNIQUE,
    rate BIGINT NOT NULL,              -- ledger units, charged once when bought
    capabilities TEXT NOT NULL DEFAULT 'Voice, SMS',
    friendly_name TEXT NOT NULL DEFAULT '',
    account_id TEXT,
    bought_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX phone_numbers_account ON phone_numbers(account_id);
