-- Vote-log imports (`compere import comparisons`, POST /comparisons/import): one row per
-- imported file, so a re-run or a resumed run stores nothing twice.
--
-- A file is known by `source`: by default a digest of its first record (its first line,
-- or for CSV its header and first row), or a name the caller gives. Every batch of votes
-- commits together with the run's new position (`lines_done`, `bytes_done`) and a digest
-- of the file up to there (`prefix_digest`), so the position is exactly what is stored;
-- a re-run skips those lines once their digest matches, and refuses a different file.
-- project_id: the board the votes went to (1 = the default board).
CREATE TABLE import_runs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id       BIGINT NOT NULL DEFAULT 1,
    source           TEXT NOT NULL CHECK (char_length(source) BETWEEN 1 AND 200),
    kind             TEXT NOT NULL CHECK (kind IN ('compere', 'arena')),
    lines_done       BIGINT NOT NULL DEFAULT 0,
    bytes_done       BIGINT NOT NULL DEFAULT 0,
    prefix_digest    TEXT NOT NULL,
    stored           BIGINT NOT NULL DEFAULT 0,
    rejected         BIGINT NOT NULL DEFAULT 0,
    entities_created BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (project_id, source)
);
