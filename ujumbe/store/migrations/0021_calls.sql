-- Voice calls as messages (docs/voice.md): what each call did, kept beside its message.

-- One row per voice message whose call ended (services/reports.py writes it
-- with the receipt that ends the message). Times in ms; instants epoch ms.
CREATE TABLE calls (
    message_id BIGINT PRIMARY KEY,
    account_id TEXT NOT NULL,
    connector TEXT,                    -- the trunk (or the simulator) that placed it
    call_id TEXT NOT NULL,             -- the SIP Call-ID
    outcome TEXT NOT NULL,             -- completed | hungup | unanswered | failed | terminated
    reason TEXT NOT NULL,              -- core/calls.py REASONS
    sip_status INTEGER,                -- the INVITE's final status
    sip_phrase TEXT NOT NULL DEFAULT '',
    q850 INTEGER,                      -- Reason: Q.850;cause=N
    started_at BIGINT,                 -- INVITE sent
    ringing_at BIGINT,                 -- first 180/183
    answered_at BIGINT,                -- 200 OK
    ended_at BIGINT,                   -- BYE or the final answer
    ring_ms INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,  -- answer to hang-up: what is billed
    playback_ms INTEGER NOT NULL DEFAULT 0,
    audio_ms INTEGER NOT NULL DEFAULT 0,
    dtmf TEXT NOT NULL DEFAULT '',
    sip_log TEXT,                      -- JSON list of the SIP exchange, secrets redacted
    created_at BIGINT NOT NULL
);
CREATE INDEX calls_account ON calls(account_id, outcome);

-- How a price counts: NULL per part (SMS, email); voice per_minute (started
-- minutes of the answered call) or per_call (once per answered call).
ALTER TABLE prices ADD COLUMN unit TEXT;

-- A voice receipt carries the call's facts: parked with it when it comes
-- before its submit is recorded (JSON of core.calls.CallResult).
ALTER TABLE early_receipts ADD COLUMN call TEXT;
