-- API keys for scripts and pipelines, and who cast every vote.
--
-- api_keys: a key is shown once; only its SHA-256 is stored (a 256-bit random key needs
-- no slow hash), with a short visible prefix that identifies it in lists. project_id
-- NULL means every project its owner belongs to. scopes is a JSON array of read, vote,
-- write, admin. rate_limit / rate_window: the key's own quota (NULL: the default
-- policy). last_used_at is written at most once a minute per key and worker.
--
-- comparisons.voter: u:<user id>, k:<key id>, or a:<HMAC of a voter id> (the anonymous
-- cookie, or an end user a key votes for); NULL for votes from before this file.
-- voter_daily_votes: one counter row per (project, voter, UTC day), raised in the vote's
-- own transaction only while below the project's daily cap.

CREATE TABLE api_keys (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id   BIGINT REFERENCES projects (id) ON DELETE CASCADE,
    name         TEXT NOT NULL DEFAULT '' CHECK (char_length(name) <= 200),
    prefix       TEXT NOT NULL CHECK (char_length(prefix) BETWEEN 4 AND 32),
    key_hash     TEXT NOT NULL CHECK (char_length(key_hash) = 64),
    scopes       TEXT NOT NULL,
    rate_limit   INTEGER CHECK (rate_limit IS NULL OR rate_limit > 0),
    rate_window  INTEGER CHECK (rate_window IS NULL OR rate_window > 0),
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, id);

ALTER TABLE comparisons ADD COLUMN voter TEXT CHECK (voter IS NULL OR char_length(voter) <= 80);

CREATE TABLE voter_daily_votes (
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    voter      TEXT NOT NULL,
    day        TEXT NOT NULL,                  -- UTC date, YYYY-MM-DD
    votes      INTEGER NOT NULL,
    PRIMARY KEY (project_id, voter, day)
);
