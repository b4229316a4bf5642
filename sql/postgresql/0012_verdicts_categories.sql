-- Verdicts and categories of votes.
--
-- verdict: 'win' (selected_entity_id names the winner), 'tie' or 'both_bad' (both with
-- selected_entity_id NULL). Votes stored before this migration have no verdict: a
-- NULL reads as 'win' when an entity was selected and 'tie' otherwise.
-- category: the criterion or prompt category the vote judged (NULL: none given);
-- boards can be read per category (within a project) from the one vote log.

ALTER TABLE comparisons
    ADD COLUMN verdict TEXT CHECK (verdict IS NULL OR verdict IN ('win', 'tie', 'both_bad')),
    ADD COLUMN category TEXT CHECK (category IS NULL OR length(category) BETWEEN 1 AND 100);

CREATE INDEX comparisons_category_idx ON comparisons (project_id, category, id) WHERE category IS NOT NULL;
