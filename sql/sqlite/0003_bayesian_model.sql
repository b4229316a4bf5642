-- Bayesian strength per entity and pair-selection support (see sql/postgresql/0003).
-- SQLite cannot add a column with a non-constant default: random_key is filled here
-- for existing rows and written by the application for new ones.

ALTER TABLE entities ADD COLUMN mu REAL NOT NULL DEFAULT 0;
ALTER TABLE entities ADD COLUMN sigma REAL NOT NULL DEFAULT 1.5;
ALTER TABLE entities ADD COLUMN random_key REAL NOT NULL DEFAULT 0;
UPDATE entities SET random_key = (random() / 18446744073709551616.0) + 0.5;

CREATE INDEX entities_live_sigma_idx ON entities (sigma DESC, id) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_mu_idx ON entities (mu, id) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_random_idx ON entities (random_key) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_score_idx ON entities (mu DESC, id) WHERE deleted_at IS NULL;

ALTER TABLE comparisons ADD COLUMN strategy TEXT;
ALTER TABLE comparisons ADD COLUMN selection_probability REAL;
ALTER TABLE comparisons ADD COLUMN pair_token_id TEXT;

CREATE UNIQUE INDEX comparisons_pair_token_idx ON comparisons (pair_token_id) WHERE pair_token_id IS NOT NULL;

CREATE INDEX entities_updated_idx ON entities (updated_at);
