-- Exactly-once writes (SQLite flavour of sql/postgresql/0009).

CREATE TABLE idempotency_records (
    record_key   TEXT PRIMARY KEY CHECK (length(record_key) BETWEEN 1 AND 512),
    fingerprint  TEXT NOT NULL,
    status       INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE INDEX idempotency_records_created_idx ON idempotency_records (created_at);
