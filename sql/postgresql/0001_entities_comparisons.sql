-- Entities and the comparison log.
-- Comparisons are the immutable record of every vote; the per-entity columns
-- (rating, counters) are derived from them and updated in the same transaction.

CREATE TABLE entities (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 1000),
    image_urls  TEXT NOT NULL DEFAULT '[]',          -- JSON array of strings
    rating      DOUBLE PRECISION NOT NULL,           -- Elo
    comparisons INTEGER NOT NULL DEFAULT 0,
    wins        INTEGER NOT NULL DEFAULT 0,
    losses      INTEGER NOT NULL DEFAULT 0,
    ties        INTEGER NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at  TIMESTAMPTZ                          -- soft delete: history stays intact
);

-- Leaderboard order over live entities.
CREATE INDEX entities_live_rating_idx ON entities (rating DESC, id) WHERE deleted_at IS NULL;

CREATE TABLE comparisons (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity1_id         BIGINT NOT NULL REFERENCES entities (id),
    entity2_id         BIGINT NOT NULL REFERENCES entities (id),
    selected_entity_id BIGINT REFERENCES entities (id),   -- NULL records a tie
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT comparisons_distinct_entities CHECK (entity1_id <> entity2_id),
    CONSTRAINT comparisons_winner_is_compared
        CHECK (selected_entity_id IS NULL OR selected_entity_id IN (entity1_id, entity2_id))
);

-- History of one entity, newest first (filters and recent opponents).
CREATE INDEX comparisons_entity1_idx ON comparisons (entity1_id, id DESC);
CREATE INDEX comparisons_entity2_idx ON comparisons (entity2_id, id DESC);
