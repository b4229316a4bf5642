-- Exactly-once writes: the answer to every request sent with an Idempotency-Key.
--
-- A row is written in the same transaction as the write it protects (a vote, a batch of
-- votes) or, for the other idempotent routes, right after it, so a retry is recognised
-- even when Redis, which sits in front of this table as a fast path, has lost its data.
-- record_key is the caller's scope and the SHA-256 of the key (keys are client text);
-- fingerprint is the digest of method, path and body (a reused key with another request
-- is refused). Rows older than IDEMPOTENCY_TTL are ignored and purged in passing.

CREATE TABLE idempotency_records (
    record_key   TEXT PRIMARY KEY CHECK (char_length(record_key) BETWEEN 1 AND 512),
    fingerprint  TEXT NOT NULL,
    status       INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

-- The purge deletes by age.
CREATE INDEX idempotency_records_created_idx ON idempotency_records (created_at);
