-- Vote-log import runs (SQLite flavour of sql/postgresql/0010).
CREATE TABLE import_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id       INTEGER NOT NULL DEFAULT 1,
    source           TEXT NOT NULL CHECK (length(source) BETWEEN 1 AND 200),
    kind             TEXT NOT NULL CHECK (kind IN ('compere', 'arena')),
    lines_done       INTEGER NOT NULL DEFAULT 0,
    bytes_done       INTEGER NOT NULL DEFAULT 0,
    prefix_digest    TEXT NOT NULL,
    stored           INTEGER NOT NULL DEFAULT 0,
    rejected         INTEGER NOT NULL DEFAULT 0,
    entities_created INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (project_id, source)
);
