-- Signed webhooks and the prompt that preference exports pair responses under.
--
-- Webhooks are global until projects exist; a nullable project_id column on
-- webhook_subscriptions and webhook_events (and in the claim's filter) is all a project
-- scope will add, since nothing here is unique across subscriptions.

-- The prompt an entity answers (an LLM response's prompt), for `export preferences`.
ALTER TABLE entities
    ADD COLUMN prompt TEXT CHECK (prompt IS NULL OR char_length(prompt) <= 20000);

CREATE TABLE webhook_subscriptions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url         TEXT NOT NULL CHECK (char_length(url) BETWEEN 1 AND 2048),
    events      TEXT NOT NULL,                       -- JSON array of event types
    secret      TEXT NOT NULL,                       -- HMAC key, shown once at creation
    description TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- The outbox: written in the same transaction as the change it reports (a vote inserts
-- one row here only while some subscription wants comparison.created), turned into
-- deliveries by the background dispatcher and then deleted. No index, on purpose: the
-- table only ever holds the events of the last second or so, which the dispatcher
-- reads whole, and every vote would otherwise pay for one more index entry.
CREATE TABLE webhook_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY,
    event_type TEXT NOT NULL,
    subject_id BIGINT,        -- comparison.created: the comparison (its row is the payload)
    payload    TEXT,          -- JSON data of the other events
    created_at TIMESTAMPTZ NOT NULL
);

-- The delivery log and the retry schedule, shared by every worker.
CREATE TABLE webhook_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id BIGINT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,  -- the JSON body, byte for byte what is signed and sent
    status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,  -- while an attempt runs: the end of its lease
    last_attempt_at TIMESTAMPTZ,
    response_code   INTEGER,
    last_error      TEXT,
    replay_of       BIGINT REFERENCES webhook_deliveries (id) ON DELETE SET NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ
);

-- The queue: each subscription's pending deliveries in order.
CREATE INDEX webhook_deliveries_pending_idx
    ON webhook_deliveries (subscription_id, id) WHERE status = 'pending';
-- The delivery log of one subscription, newest first.
CREATE INDEX webhook_deliveries_log_idx ON webhook_deliveries (subscription_id, id DESC);

-- Small shared state of the dispatcher (the last top K reported by leaderboard.changed).
CREATE TABLE webhook_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
