-- Webhooks belong to a project, as its entities and votes do: a subscription hears the
-- events of its own project only (the top-level /webhooks/ routes are the default
-- project's, so existing subscriptions keep what they had). An event names its project;
-- a vote's event leaves it NULL and the dispatcher reads it from the comparison.

ALTER TABLE webhook_subscriptions
    ADD COLUMN project_id BIGINT NOT NULL DEFAULT 1 REFERENCES projects (id) ON DELETE CASCADE;
CREATE INDEX webhook_subscriptions_project_idx ON webhook_subscriptions (project_id, id);

ALTER TABLE webhook_events ADD COLUMN project_id BIGINT;
