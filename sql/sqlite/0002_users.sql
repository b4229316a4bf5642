-- Users, and who recorded each comparison (SQLite flavour of sql/postgresql/0002).

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT NOT NULL CHECK (length(username) BETWEEN 3 AND 50),
    email           TEXT CHECK (length(email) <= 254),
    full_name       TEXT CHECK (length(full_name) <= 200),
    hashed_password TEXT NOT NULL,
    disabled        INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    is_superuser    INTEGER NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    created_at      TEXT NOT NULL
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE email IS NOT NULL;

ALTER TABLE comparisons ADD COLUMN user_id INTEGER REFERENCES users (id);
CREATE INDEX comparisons_user_idx ON comparisons (user_id, id DESC) WHERE user_id IS NOT NULL;
