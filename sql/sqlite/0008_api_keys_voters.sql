-- API keys and voter identity (SQLite flavour of sql/postgresql/0008; the comments there
-- explain each column).

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id   INTEGER REFERENCES projects (id) ON DELETE CASCADE,
    name         TEXT NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    prefix       TEXT NOT NULL CHECK (length(prefix) BETWEEN 4 AND 32),
    key_hash     TEXT NOT NULL CHECK (length(key_hash) = 64),
    scopes       TEXT NOT NULL,
    rate_limit   INTEGER CHECK (rate_limit IS NULL OR rate_limit > 0),
    rate_window  INTEGER CHECK (rate_window IS NULL OR rate_window > 0),
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, id);

ALTER TABLE comparisons ADD COLUMN voter TEXT CHECK (voter IS NULL OR length(voter) <= 80);

CREATE TABLE voter_daily_votes (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    voter      TEXT NOT NULL,
    day        TEXT NOT NULL,
    votes      INTEGER NOT NULL,
    PRIMARY KEY (project_id, voter, day)
);
