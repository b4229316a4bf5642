-- More ranking settings per project (SQLite flavour of sql/postgresql/0013), each NULL =
-- follow the deployment's setting, so every existing project behaves exactly as before.

ALTER TABLE projects
    ADD COLUMN trust_mode TEXT CHECK (trust_mode IS NULL OR trust_mode IN ('off', 'default', 'strict'));
ALTER TABLE projects
    ADD COLUMN provisional_max_uncertainty REAL
        CHECK (provisional_max_uncertainty IS NULL OR provisional_max_uncertainty > 0);
ALTER TABLE projects
    ADD COLUMN provisional_min_votes INTEGER CHECK (provisional_min_votes IS NULL OR provisional_min_votes >= 0);
ALTER TABLE projects
    ADD COLUMN ranking_objective TEXT CHECK (ranking_objective IS NULL OR ranking_objective IN ('full', 'top_k'));
ALTER TABLE projects
    ADD COLUMN ranking_top_k INTEGER CHECK (ranking_top_k IS NULL OR ranking_top_k >= 1);
