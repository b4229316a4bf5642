-- Authentication state that must survive losing Redis, and one spelling per account
-- (SQLite flavour of sql/postgresql/0005; the comments there explain each column).

ALTER TABLE users ADD COLUMN username_canonical TEXT;
ALTER TABLE users ADD COLUMN email_canonical TEXT;
ALTER TABLE users ADD COLUMN token_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN failures_since INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until INTEGER NOT NULL DEFAULT 0;

DROP INDEX users_username_key;
DROP INDEX users_email_key;
CREATE UNIQUE INDEX users_username_canonical_key ON users (username_canonical);
CREATE UNIQUE INDEX users_email_canonical_key ON users (email_canonical) WHERE email_canonical IS NOT NULL;

CREATE TABLE revoked_tokens (
    token_id   TEXT PRIMARY KEY CHECK (length(token_id) BETWEEN 1 AND 64),
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revoked_tokens_expiry_idx ON revoked_tokens (expires_at);
