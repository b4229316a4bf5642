-- A caller-chosen identifier per entity, so bulk imports can be re-run without
-- creating duplicates. Optional; unique when given (NULLs never collide), and kept by
-- soft-deleted rows so a re-import does not bring a deleted entity back.

ALTER TABLE entities
    ADD COLUMN external_id TEXT
        CHECK (external_id IS NULL OR char_length(external_id) BETWEEN 1 AND 200);

CREATE UNIQUE INDEX entities_external_id_key ON entities (external_id);
