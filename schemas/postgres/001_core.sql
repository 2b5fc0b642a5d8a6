-- Nudgel core schema (v1). Table and column names are a contract (analytics
-- reads them): add columns freely, rename none.
-- The migration runner creates nudgel.schema_migrations and runs this file
-- inside its own transaction: no BEGIN/COMMIT here.

CREATE SCHEMA IF NOT EXISTS nudgel;

-- One row per message: the idempotency claim and the receipt.
-- Forward-only: accepted -> submitting -> sent|failed|rejected
--               -> delivered|undelivered|expired.
CREATE TABLE nudgel.message_receipts (
    message_id         uuid PRIMARY KEY,
    tenant_id          text NOT NULL,
    idempotency_key    text,
    to_e164            text,
    country            text,
    operator           text,
    gateway            text,
    gateway_message_id text,
    status             text NOT NULL
        CONSTRAINT message_receipts_status_check
        CHECK (status IN ('accepted', 'submitting', 'sent', 'failed', 'rejected',
                          'delivered', 'undelivered', 'expired')),
    error_code         text,
    error_message      text,
    encoding           text
        CONSTRAINT message_receipts_encoding_check CHECK (encoding IN ('gsm7', 'ucs2')),
    segments           integer CONSTRAINT message_receipts_segments_check CHECK (segments >= 0),
    cost_amount        numeric(14,6),
    cost_currency      text
        CONSTRAINT message_receipts_cost_currency_check
        CHECK (cost_currency IN ('KES', 'NGN', 'UGX', 'USD')),
    attempt            integer NOT NULL DEFAULT 0
        CONSTRAINT message_receipts_attempt_check CHECK (attempt >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    submitted_at       timestamptz,
    final_at           timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- claim bookkeeping
    client_ref         text,
    claimed_by         text,
    claimed_at         timestamptz,
    trace_id           text,
    metadata           jsonb,
    CONSTRAINT message_receipts_tenant_idempotency_key UNIQUE (tenant_id, idempotency_key)
);

COMMENT ON TABLE nudgel.message_receipts IS
    'One row per message: idempotency claim (status submitting) and delivery receipt; forward-only status.';
COMMENT ON COLUMN nudgel.message_receipts.client_ref IS
    'Client reference sent to the gateway; reused when a stale submitting claim is resubmitted.';
COMMENT ON COLUMN nudgel.message_receipts.cost_amount IS 'Carrier cost in cost_currency.';

CREATE INDEX message_receipts_gateway_msg_idx
    ON nudgel.message_receipts (gateway, gateway_message_id);
CREATE INDEX message_receipts_tenant_created_idx
    ON nudgel.message_receipts (tenant_id, created_at);
-- Stale-claim scan: claims left in submitting by a crashed worker.
CREATE INDEX message_receipts_submitting_idx
    ON nudgel.message_receipts (claimed_at)
    WHERE status = 'submitting';

-- Append-only: one row per receipt transition. Re-applying a transition is a
-- no-op with INSERT ... ON CONFLICT DO NOTHING.
CREATE TABLE nudgel.message_receipt_history (
    id          bigserial PRIMARY KEY,
    message_id  uuid NOT NULL REFERENCES nudgel.message_receipts (message_id) ON DELETE CASCADE,
    from_status text,
    to_status   text NOT NULL,
    event_id    text,
    detail      jsonb,
    at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_receipt_history_transition
        UNIQUE NULLS NOT DISTINCT (message_id, from_status, to_status)
);

COMMENT ON COLUMN nudgel.message_receipt_history.event_id IS
    'Deterministic CloudEvents id of the status event emitted for this transition.';

CREATE INDEX message_receipt_history_message_at_idx
    ON nudgel.message_receipt_history (message_id, at);

CREATE TABLE nudgel.message_templates (
    tenant_id  text NOT NULL,
    name       text NOT NULL
        CONSTRAINT message_templates_name_check CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    locale     text NOT NULL DEFAULT 'en',
    body       text NOT NULL CONSTRAINT message_templates_body_check CHECK (body <> ''),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name, locale)
);

-- Per-tenant fairness caps; NULL means the worker's configured default.
CREATE TABLE nudgel.tenant_limits (
    tenant_id            text PRIMARY KEY,
    max_in_flight        integer CONSTRAINT tenant_limits_max_in_flight_check CHECK (max_in_flight > 0),
    send_rate_per_second numeric CONSTRAINT tenant_limits_send_rate_check CHECK (send_rate_per_second > 0),
    burst                integer CONSTRAINT tenant_limits_burst_check CHECK (burst > 0),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nudgel.webhook_endpoints (
    endpoint_id                uuid PRIMARY KEY,
    tenant_id                  text NOT NULL,
    url                        text NOT NULL
        CONSTRAINT webhook_endpoints_url_check CHECK (url ~ '^https?://'),
    description                text,
    event_types                text[] NOT NULL DEFAULT '{}',
    rate_limit_per_second      numeric
        CONSTRAINT webhook_endpoints_rate_limit_check CHECK (rate_limit_per_second > 0),
    max_concurrency            integer
        CONSTRAINT webhook_endpoints_max_concurrency_check CHECK (max_concurrency > 0),
    enabled                    boolean NOT NULL DEFAULT true,
    disabled_reason            text,
    disabled_at                timestamptz,
    secret_ciphertext          bytea NOT NULL,
    secret_key_id              text NOT NULL,
    previous_secret_ciphertext bytea,
    previous_secret_key_id     text,
    previous_secret_expires_at timestamptz,
    failing_since              timestamptz,
    last_success_at            timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN nudgel.webhook_endpoints.event_types IS
    'Event types delivered: exact names (message.delivered) or prefixes (message.*); empty means all.';
COMMENT ON COLUMN nudgel.webhook_endpoints.secret_ciphertext IS
    'Signing secret (whsec_...) encrypted with AES-256-GCM; key chosen by secret_key_id.';
COMMENT ON COLUMN nudgel.webhook_endpoints.previous_secret_ciphertext IS
    'Secret being rotated out; still signed with until previous_secret_expires_at.';

CREATE INDEX webhook_endpoints_tenant_enabled_idx
    ON nudgel.webhook_endpoints (tenant_id)
    WHERE enabled;

-- One row per webhook job (delivery_id is the job id).
CREATE TABLE nudgel.webhook_deliveries (
    delivery_id      uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    endpoint_id      uuid,
    url              text,
    event_type       text NOT NULL,
    event_id         text NOT NULL,
    status           text NOT NULL
        CONSTRAINT webhook_deliveries_status_check
        CHECK (status IN ('pending', 'delivering', 'delivered', 'failed', 'exhausted', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0
        CONSTRAINT webhook_deliveries_attempts_check CHECK (attempts >= 0),
    last_status_code integer,
    last_error       text,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    final_at         timestamptz,
    CONSTRAINT webhook_deliveries_target_check CHECK (endpoint_id IS NOT NULL OR url IS NOT NULL),
    CONSTRAINT webhook_deliveries_endpoint_event UNIQUE (endpoint_id, event_id)
);

COMMENT ON COLUMN nudgel.webhook_deliveries.endpoint_id IS
    'Registered endpoint; NULL for a one-off url delivery (no foreign key: endpoints may be deleted).';

CREATE INDEX webhook_deliveries_tenant_created_idx
    ON nudgel.webhook_deliveries (tenant_id, created_at);

-- One row per HTTP attempt.
CREATE TABLE nudgel.webhook_attempts (
    delivery_id      uuid NOT NULL REFERENCES nudgel.webhook_deliveries (delivery_id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    status_code      integer,
    latency_ms       integer,
    error_class      text,
    error_message    text,
    response_snippet text,
    attempted_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt)
);
