-- The claim as a lease, and `submitting` only once a request is handed to a
-- gateway (issue 10, items 8 and 10; DESIGN §5 "Idempotency by claim",
-- "Unknown outcomes"). Runs inside the migration runner's transaction.
--
-- Before: a claim wrote `submitting` at once, so every job a worker had
-- claimed and queued behind a gateway's TPS cap looked sent after a crash,
-- and recovery could not tell sent from unsent. Now:
--   accepted    + claimed_by/claimed_at: claimed (a lease), never handed to
--               a gateway. A stale or released lease is taken over and the
--               message sent without doubt.
--   submitting  + handed_at: the worker wrote, before sending, that the
--               request goes to `gateway` (one batched statement per turn).
--               A stale lease with handed_at set is an unknown outcome: the
--               carrier may have the message; the gateway's unknown_outcome
--               policy decides (resubmit or hold).
--   a release (a definite failure, the job off to a retry tier, or a job
--               handed back at shutdown) clears the lease and handed_at: the
--               next claim sends again without doubt.

ALTER TABLE nudgel.message_receipts ADD COLUMN handed_at timestamptz;

COMMENT ON COLUMN nudgel.message_receipts.handed_at IS
    'When the request of the current claim was handed to the gateway (column gateway); NULL '
    'while claimed but not sent, and after a release. Set with a stale claim: outcome unknown.';

-- A message may also end failed or rejected before it was ever submitted
-- (no route, a missing template, every circuit open until its retries ran
-- out): accepted -> failed | rejected. Every other edge is unchanged.
CREATE OR REPLACE FUNCTION nudgel.receipt_transition_allowed(from_status text, to_status text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE from_status
        WHEN 'accepted'   THEN to_status IN ('submitting', 'failed', 'rejected', 'expired')
        WHEN 'submitting' THEN to_status IN ('sent', 'failed', 'rejected', 'expired')
        WHEN 'sent'       THEN to_status IN ('delivered', 'undelivered', 'expired')
        ELSE false
    END
$$;

-- The idempotency claim (same signature as in 002). Returns exactly one row:
--   fresh           a new row in accepted (attempt 1, client_ref = message id), or
--                   an accepted row with no lease, a released or a stale one
--                   (the API tier's row, a job handed back, a worker that died
--                   before sending): the lease is ours, nothing was sent: send.
--   resubmit_stale  a submitting row whose lease was released, or went stale
--                   while no request was out (handed_at NULL): taken over,
--                   attempt + 1, same client_ref: send again without doubt.
--   outcome_unknown a submitting row whose lease went stale while its request
--                   was at the gateway (handed_at set): taken over, attempt + 1,
--                   handed_at kept (the doubt stays until it is resolved); the
--                   row's gateway policy decides.
--   in_progress     a fresh lease (any worker, this one included): retry later.
--   already_final   sent or a final status: do not send, re-emit the event.
--   deduplicated    no row for this message id, but the tenant's idempotency
--                   key belongs to another message (returned).
CREATE OR REPLACE FUNCTION nudgel.receipt_claim(
    p_message_id      uuid,
    p_tenant_id       text,
    p_idempotency_key text,
    p_to_e164         text,
    p_country         text,
    p_operator        text,
    p_trace_id        text,
    p_metadata        jsonb,
    p_worker          text,
    p_stale_after_ms  bigint)
RETURNS TABLE (outcome text, receipt nudgel.message_receipts)
LANGUAGE plpgsql
AS $$
DECLARE
    r      nudgel.message_receipts%ROWTYPE;
    now_ts timestamptz := clock_timestamp();
    free   boolean;
BEGIN
    LOOP
        INSERT INTO nudgel.message_receipts AS m
            (message_id, tenant_id, idempotency_key, to_e164, country, operator, status,
             attempt, client_ref, claimed_by, claimed_at, trace_id, metadata,
             created_at, updated_at)
        VALUES (p_message_id, p_tenant_id, p_idempotency_key, p_to_e164, p_country, p_operator,
                'accepted', 1, p_message_id::text, p_worker, now_ts, p_trace_id, p_metadata,
                now_ts, now_ts)
        ON CONFLICT DO NOTHING
        RETURNING m.* INTO r;
        IF FOUND THEN
            INSERT INTO nudgel.message_receipt_history AS h (message_id, from_status, to_status, detail, at)
            VALUES (p_message_id, NULL, 'accepted',
                    jsonb_build_object('attempt', 1, 'worker', p_worker), now_ts)
            ON CONFLICT DO NOTHING;
            outcome := 'fresh';
            receipt := r;
            RETURN NEXT;
            RETURN;
        END IF;

        SELECT m.* INTO r FROM nudgel.message_receipts m
         WHERE m.message_id = p_message_id
           FOR UPDATE;
        IF FOUND THEN
            free := r.claimed_by IS NULL OR r.claimed_at IS NULL
                    OR r.claimed_at <= now_ts - make_interval(secs => p_stale_after_ms / 1000.0);
            IF r.status IN ('accepted', 'submitting') AND free THEN
                UPDATE nudgel.message_receipts m
                   SET attempt = m.attempt + 1,
                       client_ref = coalesce(m.client_ref, m.message_id::text),
                       claimed_by = p_worker, claimed_at = now_ts, updated_at = now_ts
                 WHERE m.message_id = p_message_id
                RETURNING m.* INTO r;
                outcome := CASE WHEN r.status = 'accepted' THEN 'fresh'
                                WHEN r.handed_at IS NULL THEN 'resubmit_stale'
                                ELSE 'outcome_unknown' END;
            ELSIF r.status IN ('accepted', 'submitting') THEN
                outcome := 'in_progress';
            ELSE
                outcome := 'already_final';
            END IF;
            receipt := r;
            RETURN NEXT;
            RETURN;
        END IF;

        IF p_idempotency_key IS NOT NULL THEN
            SELECT m.* INTO r FROM nudgel.message_receipts m
             WHERE m.tenant_id = p_tenant_id AND m.idempotency_key = p_idempotency_key;
            IF FOUND THEN
                outcome := 'deduplicated';
                receipt := r;
                RETURN NEXT;
                RETURN;
            END IF;
        END IF;
        -- The row we conflicted with was deleted meanwhile: try again.
    END LOOP;
END
$$;
