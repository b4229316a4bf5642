-- Users, and who recorded each comparison.
-- Usernames and e-mail addresses are unique regardless of letter case, so "Alice"
-- cannot register beside "alice". The first user ever created becomes a superuser
-- (decided under a table lock by the application).

CREATE TABLE users (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        TEXT NOT NULL CHECK (char_length(username) BETWEEN 3 AND 50),
    email           TEXT CHECK (char_length(email) <= 254),
    full_name       TEXT CHECK (char_length(full_name) <= 200),
    hashed_password TEXT NOT NULL,                    -- bcrypt, cost in the hash
    disabled        BOOLEAN NOT NULL DEFAULT false,
    is_superuser    BOOLEAN NOT NULL DEFAULT false,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE email IS NOT NULL;

-- NULL for votes recorded anonymously (AUTH_ENABLED=false) and before this file.
ALTER TABLE comparisons ADD COLUMN user_id BIGINT REFERENCES users (id);
CREATE INDEX comparisons_user_idx ON comparisons (user_id, id DESC) WHERE user_id IS NOT NULL;
