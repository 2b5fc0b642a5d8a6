-- Webhooks (issue 4): what a delivery needs to be replayed, and replays
-- themselves. Runs inside the migration runner's transaction: no BEGIN/COMMIT.
-- Adds columns and replaces one constraint by an equivalent partial index;
-- renames nothing.

ALTER TABLE nudgel.webhook_deliveries
    ADD COLUMN payload         jsonb,
    ADD COLUMN job             jsonb,
    ADD COLUMN replay_of       uuid,
    ADD COLUMN dispatched_from text;

COMMENT ON COLUMN nudgel.webhook_deliveries.payload IS
    'The job''s payload object (the body sent, before signing), kept for replay.';
COMMENT ON COLUMN nudgel.webhook_deliveries.job IS
    'The whole webhook job as received (metadata, idempotency key), when the writer kept it; '
    'replay uses it over the columns when present.';
COMMENT ON COLUMN nudgel.webhook_deliveries.replay_of IS
    'For a delivery created by `nudgel-admin webhooks replay`: the delivery it replays '
    '(same event_id, so the same webhook-id reaches the endpoint).';
COMMENT ON COLUMN nudgel.webhook_deliveries.dispatched_from IS
    'Id of the status event (CloudEvents id) the dispatcher made this delivery from, if any.';

-- One delivery per (endpoint, event) still holds for everything but replays:
-- a replay is a new delivery of the same event to the same endpoint, on
-- purpose. The partial unique index keeps INSERT ... ON CONFLICT DO NOTHING
-- deduplicating redelivered jobs exactly as the constraint did.
ALTER TABLE nudgel.webhook_deliveries DROP CONSTRAINT webhook_deliveries_endpoint_event;
CREATE UNIQUE INDEX webhook_deliveries_endpoint_event
    ON nudgel.webhook_deliveries (endpoint_id, event_id)
    WHERE replay_of IS NULL;

-- `webhooks replay --endpoint ID --since T`: one endpoint's deliveries by time.
CREATE INDEX webhook_deliveries_endpoint_created_idx
    ON nudgel.webhook_deliveries (endpoint_id, created_at);

CREATE INDEX webhook_deliveries_replay_of_idx
    ON nudgel.webhook_deliveries (replay_of)
    WHERE replay_of IS NOT NULL;
