-- Verdicts and categories of votes (SQLite flavour of sql/postgresql/0012).

ALTER TABLE comparisons
    ADD COLUMN verdict TEXT CHECK (verdict IS NULL OR verdict IN ('win', 'tie', 'both_bad'));
ALTER TABLE comparisons
    ADD COLUMN category TEXT CHECK (category IS NULL OR length(category) BETWEEN 1 AND 100);

CREATE INDEX comparisons_category_idx ON comparisons (project_id, category, id) WHERE category IS NOT NULL;
