-- Projects: many independent boards in one deployment.
--
-- Every entity and comparison belongs to exactly one project. Existing rows move into
-- the project 'default' (id 1) with every id, rating and timestamp unchanged; the
-- top-level API keeps acting on it.
--
-- Ranking settings per project: NULL means "follow the deployment's setting"
-- (RANKING_STRATEGY, ELO_K_FACTOR, BAYES_PRIOR_SIGMA, PAIR_EXPLORATION; ties and
-- anonymous votes accepted, no daily cap), resolved when a request names the project.
-- So 'default' behaves exactly as the deployment did before projects existed.
--
-- A comparison between entities of two projects is impossible: entities are unique on
-- (project_id, id), and each compared entity is a foreign key on (project_id, entityN_id).
-- Those composite keys replace the single-column ones of 0001 (a vote checks two keys,
-- as before). The selected entity is one of the two (CHECK of 0001).

CREATE TABLE projects (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug            TEXT NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),  -- immutable
    name            TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description     TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    visibility      TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'public')),
    strategy        TEXT CHECK (strategy IS NULL OR char_length(strategy) BETWEEN 1 AND 50),
    elo_k_factor    DOUBLE PRECISION CHECK (elo_k_factor IS NULL OR elo_k_factor > 0),
    prior_sd        DOUBLE PRECISION CHECK (prior_sd IS NULL OR prior_sd > 0),
    exploration     DOUBLE PRECISION CHECK (exploration IS NULL OR exploration BETWEEN 0 AND 1),
    allow_ties      BOOLEAN,
    allow_anonymous BOOLEAN,
    daily_vote_cap  INTEGER CHECK (daily_vote_cap IS NULL OR daily_vote_cap >= 0),  -- 0 = none
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    archived_at     TIMESTAMPTZ                         -- archived: read-only, hidden, restorable
);
CREATE UNIQUE INDEX projects_slug_key ON projects (slug);

INSERT INTO projects (slug, name, description, visibility)
VALUES ('default', 'Default', 'The board of the top-level API.', 'public');

CREATE TABLE project_members (
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'voter', 'viewer')),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user_idx ON project_members (user_id);

-- A constant default: no table rewrite, existing rows read as project 1.
ALTER TABLE entities ADD COLUMN project_id BIGINT NOT NULL DEFAULT 1 REFERENCES projects (id);
ALTER TABLE comparisons ADD COLUMN project_id BIGINT NOT NULL DEFAULT 1;

ALTER TABLE entities ADD CONSTRAINT entities_project_id_key UNIQUE (project_id, id);
ALTER TABLE comparisons
    DROP CONSTRAINT comparisons_entity1_id_fkey,
    DROP CONSTRAINT comparisons_entity2_id_fkey,
    ADD CONSTRAINT comparisons_entity1_project_fkey
        FOREIGN KEY (project_id, entity1_id) REFERENCES entities (project_id, id),
    ADD CONSTRAINT comparisons_entity2_project_fkey
        FOREIGN KEY (project_id, entity2_id) REFERENCES entities (project_id, id);

-- External ids are unique per project (two projects may import the same file).
DROP INDEX entities_external_id_key;
CREATE UNIQUE INDEX entities_external_id_key ON entities (project_id, external_id);

-- Every board index leads with the project: one project's leaderboard, pairs and random
-- samples stay index range scans however many other projects share the table.
DROP INDEX entities_live_rating_idx;
DROP INDEX entities_live_sigma_idx;
DROP INDEX entities_live_mu_idx;
DROP INDEX entities_live_random_idx;
DROP INDEX entities_live_score_idx;
DROP INDEX entities_updated_idx;
CREATE INDEX entities_live_rating_idx ON entities (project_id, rating DESC, id) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_sigma_idx ON entities (project_id, sigma DESC, id) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_mu_idx ON entities (project_id, mu, id) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_random_idx ON entities (project_id, random_key) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_score_idx ON entities (project_id, mu DESC, id) WHERE deleted_at IS NULL;
CREATE INDEX entities_updated_idx ON entities (project_id, updated_at);

-- One project's vote log, newest first (listings and exports).
CREATE INDEX comparisons_project_idx ON comparisons (project_id, id DESC);
