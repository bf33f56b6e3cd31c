-- Sender names, premium short-code services and their subscribers.

-- Sender names (alphanumeric or numeric) an account may send from. A sender
-- restricted to networks may only reach subscribers of those networks.
CREATE TABLE senders (
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    networks TEXT,                  -- JSON list of network names, NULL for any network
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- Premium services on a short code. The id is the service_id clients send,
-- so it is chosen by the operator (or the next free one), not generated.
CREATE TABLE premium_services (
    id BIGINT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    shortcode TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,             -- subscription | on-demand
    keywords TEXT NOT NULL,         -- JSON list, upper case
    -- the token the partner gave us to present in every push to them: it is
    -- their credential for recognising us, and goes out in every payload
    api_token TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX premium_services_shortcode ON premium_services(shortcode);
CREATE INDEX premium_services_account ON premium_services(account_id);

CREATE TABLE subscriptions (
    id {{autoid}},                  -- the subscriber_ref clients see
    service_id BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    mobile TEXT NOT NULL,
    active INTEGER NOT NULL,
    keyword TEXT,
    source TEXT NOT NULL,           -- keyword | network | api
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (service_id, mobile)
);
CREATE INDEX subscriptions_account ON subscriptions(account_id, service_id);

-- Link ids handed out with inbound messages of on-demand services: a reply
-- must carry one that is ours, for that service and number, and recent.
CREATE TABLE premium_links (
    service_id BIGINT NOT NULL,
    link_id TEXT NOT NULL,
    mobile TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    PRIMARY KEY (service_id, link_id)
);
