-- More ranking settings per project, each NULL = follow the deployment's setting, so
-- every existing project (and `default`) behaves exactly as before:
--
-- trust_mode (TRUST_MODE): how strongly votes are weighed by their voter's record. The
-- voter records (voters, voter_entities) and the online scores are kept per project, so
-- each project's are derived under its own mode; changing it rebuilds that project.
-- provisional_max_uncertainty, provisional_min_votes (PROVISIONAL_*): when a board entry
-- stops being provisional.
-- ranking_objective, ranking_top_k (RANKING_OBJECTIVE, RANKING_TOP_K): what active pairs serve.

ALTER TABLE projects
    ADD COLUMN trust_mode TEXT CHECK (trust_mode IS NULL OR trust_mode IN ('off', 'default', 'strict')),
    ADD COLUMN provisional_max_uncertainty DOUBLE PRECISION
        CHECK (provisional_max_uncertainty IS NULL OR provisional_max_uncertainty > 0),
    ADD COLUMN provisional_min_votes INTEGER CHECK (provisional_min_votes IS NULL OR provisional_min_votes >= 0),
    ADD COLUMN ranking_objective TEXT CHECK (ranking_objective IS NULL OR ranking_objective IN ('full', 'top_k')),
    ADD COLUMN ranking_top_k INTEGER CHECK (ranking_top_k IS NULL OR ranking_top_k >= 1);
