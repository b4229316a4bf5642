-- Entities and the comparison log (SQLite flavour of sql/postgresql/0001).
-- AUTOINCREMENT guarantees an id is never reused, even after the newest row is deleted.
-- Timestamps are ISO 8601 text in UTC, written by the application.

CREATE TABLE entities (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    image_urls  TEXT NOT NULL DEFAULT '[]',
    rating      REAL NOT NULL,
    comparisons INTEGER NOT NULL DEFAULT 0,
    wins        INTEGER NOT NULL DEFAULT 0,
    losses      INTEGER NOT NULL DEFAULT 0,
    ties        INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);

CREATE INDEX entities_live_rating_idx ON entities (rating DESC, id) WHERE deleted_at IS NULL;

CREATE TABLE comparisons (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    entity1_id         INTEGER NOT NULL REFERENCES entities (id),
    entity2_id         INTEGER NOT NULL REFERENCES entities (id),
    selected_entity_id INTEGER REFERENCES entities (id),
    created_at         TEXT NOT NULL,
    CHECK (entity1_id <> entity2_id),
    CHECK (selected_entity_id IS NULL OR selected_entity_id IN (entity1_id, entity2_id))
);

CREATE INDEX comparisons_entity1_idx ON comparisons (entity1_id, id DESC);
CREATE INDEX comparisons_entity2_idx ON comparisons (entity2_id, id DESC);
