-- Signed webhooks and entity prompts (SQLite flavour of sql/postgresql/0006).

ALTER TABLE entities
    ADD COLUMN prompt TEXT CHECK (prompt IS NULL OR length(prompt) <= 20000);

CREATE TABLE webhook_subscriptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    url         TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE webhook_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type TEXT NOT NULL,
    subject_id INTEGER,
    payload    TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id INTEGER NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_attempt_at TEXT,
    response_code   INTEGER,
    last_error      TEXT,
    replay_of       INTEGER REFERENCES webhook_deliveries (id) ON DELETE SET NULL,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);

-- Not partial as on PostgreSQL: SQLite's planner would pick the log index for the
-- claim's "oldest pending delivery of each subscription" and walk a whole log.
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (subscription_id, status, id);
CREATE INDEX webhook_deliveries_log_idx ON webhook_deliveries (subscription_id, id DESC);

CREATE TABLE webhook_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
