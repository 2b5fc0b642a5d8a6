-- Webhooks (issue 10, item 17): a job with a new delivery id for an
-- (endpoint, event) another delivery of the same tenant already holds is not
-- sent: it ends "deduplicated" (event ai.nudgel.webhook.deduplicated) and is
-- recorded here, so the API tier can look its id up. It cannot be a row of
-- webhook_deliveries: (endpoint_id, event_id) is unique there. Additive: a new
-- table only. Runs inside the migration runner's transaction: no BEGIN/COMMIT.
-- (Numbered 017 (issue 10, item 17) so that it does not collide with 004.., 010 added on other branches
-- against the same development database.)

CREATE TABLE nudgel.webhook_duplicates (
    delivery_id  uuid PRIMARY KEY,
    tenant_id    text NOT NULL,
    endpoint_id  uuid NOT NULL,
    event_type   text NOT NULL,
    event_id     text NOT NULL,
    duplicate_of uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE nudgel.webhook_duplicates IS
    'Webhook jobs not sent because another delivery (duplicate_of) of the same tenant holds '
    'their (endpoint_id, event_id); delivery_id is the job id.';
COMMENT ON COLUMN nudgel.webhook_duplicates.duplicate_of IS
    'The delivery (webhook_deliveries.delivery_id, or a job in flight then) that holds the event.';

CREATE INDEX webhook_duplicates_tenant_created_idx
    ON nudgel.webhook_duplicates (tenant_id, created_at);
CREATE INDEX webhook_duplicates_duplicate_of_idx
    ON nudgel.webhook_duplicates (duplicate_of);
