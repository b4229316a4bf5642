-- Authentication state that must survive losing Redis, and one spelling per account.
--
-- username_canonical / email_canonical: compere.domain.accounts.canonical_name() of the
-- name as entered (Unicode NFKC + case folding). They replace the lower() indexes of
-- 0002, whose idea of case differed from the application's. The runner fills them for
-- existing rows right after this file, in the same transaction (see migrations.py);
-- two existing accounts with one canonical name stop the migration with their ids.
--
-- token_epoch: every token carries the epoch it was issued under; disabling the user,
-- changing the password and "log out everywhere" raise it, ending every older token.
-- failed_logins / failures_since / locked_until: the login lockout of an account
-- (Unix seconds), kept here as well as in Redis's counters.
-- revoked_tokens: single logouts, each kept until its token would expire anyway.

ALTER TABLE users
    ADD COLUMN username_canonical TEXT,
    ADD COLUMN email_canonical    TEXT,
    ADD COLUMN token_epoch        INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN failed_logins      INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN failures_since     BIGINT  NOT NULL DEFAULT 0,
    ADD COLUMN locked_until       BIGINT  NOT NULL DEFAULT 0;

DROP INDEX users_username_key;
DROP INDEX users_email_key;
CREATE UNIQUE INDEX users_username_canonical_key ON users (username_canonical);
CREATE UNIQUE INDEX users_email_canonical_key ON users (email_canonical) WHERE email_canonical IS NOT NULL;

CREATE TABLE revoked_tokens (
    token_id   TEXT PRIMARY KEY CHECK (char_length(token_id) BETWEEN 1 AND 64),
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL                        -- Unix seconds: the token's exp
);
CREATE INDEX revoked_tokens_expiry_idx ON revoked_tokens (expires_at);
