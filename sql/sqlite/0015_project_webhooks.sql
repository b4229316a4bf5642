-- Webhooks belong to a project (SQLite flavour of sql/postgresql/0015; SQLite refuses
-- ADD COLUMN ... REFERENCES with a default, so the column is added without the key, as
-- entities.project_id was in 0007).

ALTER TABLE webhook_subscriptions ADD COLUMN project_id INTEGER NOT NULL DEFAULT 1;
CREATE INDEX webhook_subscriptions_project_idx ON webhook_subscriptions (project_id, id);

ALTER TABLE webhook_events ADD COLUMN project_id INTEGER;
