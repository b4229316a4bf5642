-- A caller-chosen identifier per entity (SQLite flavour of sql/postgresql/0004).
-- Unique when given; NULLs never collide; soft-deleted rows keep theirs.

ALTER TABLE entities
    ADD COLUMN external_id TEXT
        CHECK (external_id IS NULL OR length(external_id) BETWEEN 1 AND 200);

CREATE UNIQUE INDEX entities_external_id_key ON entities (external_id);
