-- Scratch schema for the PostgreSQL ceiling: the same shape as the service's tables for
-- what the vote transaction touches (entity rows with rating and bandit counters, the
-- comparisons log and its foreign keys and indexes). Used when --migrations is not given.
CREATE TABLE entities (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    image_urls  jsonb NOT NULL DEFAULT '[]',
    rating      double precision NOT NULL DEFAULT 1500,
    comparisons integer NOT NULL DEFAULT 0,
    wins        double precision NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE comparisons (
    id                 bigserial PRIMARY KEY,
    entity1_id         bigint NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    entity2_id         bigint NOT NULL REFERENCES entities (id) ON DELETE CASCADE,
    selected_entity_id bigint REFERENCES entities (id) ON DELETE CASCADE,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comparisons_entity1_recent ON comparisons (entity1_id, id DESC);
CREATE INDEX comparisons_entity2_recent ON comparisons (entity2_id, id DESC);
