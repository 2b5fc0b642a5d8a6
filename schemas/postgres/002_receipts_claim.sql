-- Receipts: the forward-only rule in the database, and the idempotency claim
-- of the messages worker (DESIGN §5) as one function, so a claim is one round
-- trip. The C mirror of the rule is workers/messages/src/receipt_state.c; the
-- integration test test_receipts_pg checks both agree on every pair.
-- Runs inside the migration runner's transaction: no BEGIN/COMMIT here.

-- accepted   -> submitting | expired
-- submitting -> sent | failed | rejected | expired
-- sent       -> delivered | undelivered | expired
-- failed, rejected, delivered, undelivered, expired: final.
-- A status never moves to itself (a repeat is a replay, not a transition).
CREATE FUNCTION nudgel.receipt_transition_allowed(from_status text, to_status text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE from_status
        WHEN 'accepted'   THEN to_status IN ('submitting', 'expired')
        WHEN 'submitting' THEN to_status IN ('sent', 'failed', 'rejected', 'expired')
        WHEN 'sent'       THEN to_status IN ('delivered', 'undelivered', 'expired')
        ELSE false
    END
$$;

COMMENT ON FUNCTION nudgel.receipt_transition_allowed(text, text) IS
    'Forward-only receipt state machine; mirrors nudgel_receipt_transition_allowed() in C.';

-- Backstop for every writer (not only the worker): an UPDATE that changes
-- status along a forbidden edge fails. The worker's own statements filter
-- with receipt_transition_allowed() first, so they never trip it.
CREATE FUNCTION nudgel.message_receipts_forward_only()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status
       AND NOT nudgel.receipt_transition_allowed(OLD.status, NEW.status) THEN
        RAISE EXCEPTION 'receipt % may not move from % to %',
            OLD.message_id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'message_receipts_forward_only';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER message_receipts_forward_only
    BEFORE UPDATE OF status ON nudgel.message_receipts
    FOR EACH ROW EXECUTE FUNCTION nudgel.message_receipts_forward_only();

-- The idempotency claim. Returns exactly one row: the outcome and the receipt
-- row it is about.
--   fresh          the row was created in submitting (attempt 1, client_ref =
--                  message id), or a row the API tier created in accepted
--                  moved to submitting: send.
--   resubmit_stale a submitting row whose claim is older than
--                  p_stale_after_ms, or was released: taken over, attempt + 1,
--                  same client_ref: send again.
--   in_progress    a submitting row with a fresh claim (any worker,
--                  this one included): retry later.
--   already_final  sent or a final status: do not send, re-emit the event.
--   deduplicated   no row for this message id, but the tenant's
--                  idempotency key belongs to another message (returned).
-- Why plpgsql and not one CTE: in READ COMMITTED, a statement cannot see a
-- row that a concurrent claimer committed after the statement's snapshot, so
-- INSERT ... ON CONFLICT DO NOTHING followed by a SELECT in the same
-- statement finds nothing in exactly the race we care about. Each statement
-- of a plpgsql function takes a new snapshot, and SELECT ... FOR UPDATE
-- serialises claimers on the row.
CREATE FUNCTION nudgel.receipt_claim(
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
    r   nudgel.message_receipts%ROWTYPE;
    now_ts timestamptz := clock_timestamp();
BEGIN
    LOOP
        INSERT INTO nudgel.message_receipts AS m
            (message_id, tenant_id, idempotency_key, to_e164, country, operator, status,
             attempt, client_ref, claimed_by, claimed_at, trace_id, metadata,
             created_at, updated_at)
        VALUES (p_message_id, p_tenant_id, p_idempotency_key, p_to_e164, p_country, p_operator,
                'submitting', 1, p_message_id::text, p_worker, now_ts, p_trace_id, p_metadata,
                now_ts, now_ts)
        ON CONFLICT DO NOTHING
        RETURNING m.* INTO r;
        IF FOUND THEN
            INSERT INTO nudgel.message_receipt_history AS h (message_id, from_status, to_status, detail, at)
            VALUES (p_message_id, NULL, 'submitting',
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
            IF r.status = 'accepted' THEN
                UPDATE nudgel.message_receipts m
                   SET status = 'submitting', attempt = m.attempt + 1,
                       client_ref = coalesce(m.client_ref, m.message_id::text),
                       claimed_by = p_worker, claimed_at = now_ts, updated_at = now_ts
                 WHERE m.message_id = p_message_id
                RETURNING m.* INTO r;
                INSERT INTO nudgel.message_receipt_history AS h (message_id, from_status, to_status, detail, at)
                VALUES (p_message_id, 'accepted', 'submitting',
                        jsonb_build_object('attempt', r.attempt, 'worker', p_worker), now_ts)
                ON CONFLICT DO NOTHING;
                outcome := 'fresh';
            ELSIF r.status = 'submitting' THEN
                IF r.claimed_by IS NULL OR r.claimed_at IS NULL
                   OR r.claimed_at <= now_ts - make_interval(secs => p_stale_after_ms / 1000.0) THEN
                    UPDATE nudgel.message_receipts m
                       SET attempt = m.attempt + 1,
                           client_ref = coalesce(m.client_ref, m.message_id::text),
                           claimed_by = p_worker, claimed_at = now_ts, updated_at = now_ts
                     WHERE m.message_id = p_message_id
                    RETURNING m.* INTO r;
                    outcome := 'resubmit_stale';
                ELSE
                    outcome := 'in_progress';
                END IF;
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

COMMENT ON FUNCTION nudgel.receipt_claim(uuid, text, text, text, text, text, text, jsonb, text, bigint) IS
    'Idempotency claim of the messages worker (DESIGN §5); see nudgel/receipts.h.';
