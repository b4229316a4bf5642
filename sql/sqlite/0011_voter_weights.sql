-- SQLite flavour of sql/postgresql/0011_voter_weights.sql.
-- Voter weights (compere/domain/trust.py): per-voter state the online vote needs, all of
-- it derived from the vote log (`compere rebuild-ratings` recomputes it; the log itself
-- is never changed).
--
-- entities.vote_weight: what the votes on an entity counted for, summed. Votes before
-- this migration all counted 1, so it starts as the entity's vote count.
ALTER TABLE entities ADD COLUMN vote_weight REAL NOT NULL DEFAULT 0;
UPDATE entities SET vote_weight = comparisons;

-- One row per voter and project (`u:<user id>`, `k:<key id>`, `a:<keyed hash>`): votes, the summed
-- evidence that the voter answers by the consensus, distinct entities voted on, and
-- what the votes counted for.
CREATE TABLE voters (
    project_id INTEGER NOT NULL,
    voter    TEXT NOT NULL CHECK (length(voter) BETWEEN 1 AND 200),
    votes    INTEGER NOT NULL DEFAULT 0,
    evidence REAL NOT NULL DEFAULT 0,
    touched  INTEGER NOT NULL DEFAULT 0,
    weight   REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, voter)
);

-- A voter's votes on one entity and what they counted for (the influence cap).
CREATE TABLE voter_entities (
    voter     TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    votes     INTEGER NOT NULL DEFAULT 0,
    weight    REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (voter, entity_id)
);
CREATE INDEX voter_entities_entity_idx ON voter_entities (entity_id);
CREATE INDEX voter_entities_project_idx ON voter_entities (project_id);
