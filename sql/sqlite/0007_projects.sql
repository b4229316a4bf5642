-- Projects (SQLite flavour of sql/postgresql/0007; the comments there explain it).
--
-- SQLite cannot add a foreign key to an existing table: comparisons is rebuilt with the
-- composite keys (project_id, entityN_id) -> entities (project_id, id), every id and
-- value copied as is, and its AUTOINCREMENT counter carried over so no id is reused.
-- entities.project_id is added in place (SQLite refuses ADD COLUMN ... REFERENCES with
-- a non-NULL default while foreign keys are on); the application writes only ids of
-- existing projects, and projects are archived, never deleted.

CREATE TABLE projects (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    slug            TEXT NOT NULL
                        CHECK (length(slug) BETWEEN 1 AND 63
                               AND slug NOT GLOB '*[^a-z0-9-]*' AND slug NOT GLOB '-*'),
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description     TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    visibility      TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'public')),
    strategy        TEXT CHECK (strategy IS NULL OR length(strategy) BETWEEN 1 AND 50),
    elo_k_factor    REAL CHECK (elo_k_factor IS NULL OR elo_k_factor > 0),
    prior_sd        REAL CHECK (prior_sd IS NULL OR prior_sd > 0),
    exploration     REAL CHECK (exploration IS NULL OR exploration BETWEEN 0 AND 1),
    allow_ties      INTEGER CHECK (allow_ties IS NULL OR allow_ties IN (0, 1)),
    allow_anonymous INTEGER CHECK (allow_anonymous IS NULL OR allow_anonymous IN (0, 1)),
    daily_vote_cap  INTEGER CHECK (daily_vote_cap IS NULL OR daily_vote_cap >= 0),
    created_at      TEXT NOT NULL,
    archived_at     TEXT
);
CREATE UNIQUE INDEX projects_slug_key ON projects (slug);

INSERT INTO projects (slug, name, description, visibility, created_at)
VALUES ('default', 'Default', 'The board of the top-level API.', 'public',
        strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'));

CREATE TABLE project_members (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'voter', 'viewer')),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user_idx ON project_members (user_id);

ALTER TABLE entities ADD COLUMN project_id INTEGER NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX entities_project_id_key ON entities (project_id, id);

CREATE TABLE comparisons_new (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    entity1_id            INTEGER NOT NULL,
    entity2_id            INTEGER NOT NULL,
    selected_entity_id    INTEGER REFERENCES entities (id),
    created_at            TEXT NOT NULL,
    user_id               INTEGER REFERENCES users (id),
    strategy              TEXT,
    selection_probability REAL,
    pair_token_id         TEXT,
    project_id            INTEGER NOT NULL DEFAULT 1,
    CHECK (entity1_id <> entity2_id),
    CHECK (selected_entity_id IS NULL OR selected_entity_id IN (entity1_id, entity2_id)),
    FOREIGN KEY (project_id, entity1_id) REFERENCES entities (project_id, id),
    FOREIGN KEY (project_id, entity2_id) REFERENCES entities (project_id, id)
);
INSERT INTO comparisons_new (id, entity1_id, entity2_id, selected_entity_id, created_at,
                             user_id, strategy, selection_probability, pair_token_id, project_id)
SELECT id, entity1_id, entity2_id, selected_entity_id, created_at,
       user_id, strategy, selection_probability, pair_token_id, 1
FROM comparisons ORDER BY id;
-- The counter of the old table (it may be above the largest surviving id).
INSERT INTO sqlite_sequence (name, seq)
SELECT 'comparisons_new', seq FROM sqlite_sequence WHERE name = 'comparisons'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'comparisons_new');
UPDATE sqlite_sequence
SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'comparisons'))
WHERE name = 'comparisons_new' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'comparisons');
DROP TABLE comparisons;
ALTER TABLE comparisons_new RENAME TO comparisons;

CREATE INDEX comparisons_entity1_idx ON comparisons (entity1_id, id DESC);
CREATE INDEX comparisons_entity2_idx ON comparisons (entity2_id, id DESC);
CREATE INDEX comparisons_user_idx ON comparisons (user_id, id DESC) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX comparisons_pair_token_idx ON comparisons (pair_token_id) WHERE pair_token_id IS NOT NULL;
CREATE INDEX comparisons_project_idx ON comparisons (project_id, id DESC);

DROP INDEX entities_external_id_key;
CREATE UNIQUE INDEX entities_external_id_key ON entities (project_id, external_id);

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
