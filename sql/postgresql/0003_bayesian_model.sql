-- Bayesian strength per entity (logit units) and what pair selection needs at scale.
-- mu/sigma are derived from the vote log like rating; `rebuild-ratings` recomputes them.

ALTER TABLE entities
    ADD COLUMN mu DOUBLE PRECISION NOT NULL DEFAULT 0,
    ADD COLUMN sigma DOUBLE PRECISION NOT NULL DEFAULT 1.5,
    -- uniform in [0, 1), fixed per entity: random samples become index range scans
    ADD COLUMN random_key DOUBLE PRECISION NOT NULL DEFAULT random();

CREATE INDEX entities_live_sigma_idx ON entities (sigma DESC, id) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_mu_idx ON entities (mu, id) WHERE deleted_at IS NULL;
CREATE INDEX entities_live_random_idx ON entities (random_key) WHERE deleted_at IS NULL;
-- the score leaderboard (mu, best first)
CREATE INDEX entities_live_score_idx ON entities (mu DESC, id) WHERE deleted_at IS NULL;

-- How each vote's pair was served, for adaptive-sampling corrections offline.
ALTER TABLE comparisons
    ADD COLUMN strategy TEXT,
    ADD COLUMN selection_probability DOUBLE PRECISION,
    ADD COLUMN pair_token_id TEXT;

CREATE UNIQUE INDEX comparisons_pair_token_idx ON comparisons (pair_token_id) WHERE pair_token_id IS NOT NULL;

-- Cheap change detection for cached leaderboards: max(updated_at) is one index probe.
CREATE INDEX entities_updated_idx ON entities (updated_at);
