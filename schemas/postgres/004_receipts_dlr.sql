-- Delivery reports (issue 11): what nudgel-receipts needs to apply carrier
-- DLRs forward-only, keep the ones that beat their `sent` outcome, end
-- receipts with no final report as `expired`, and publish the events of the
-- transitions it makes on its own (sweeps) even across a crash.
-- Additive only. Runs inside the migration runner's transaction.
-- The C side of these statements is workers/receipts/src/receipt_dlrs.c.

-- What the carrier reported beside what we predicted and were charged.
ALTER TABLE nudgel.message_receipts
    ADD COLUMN operator_reported text,
    ADD COLUMN network_code      text,
    ADD COLUMN price_amount      numeric(14,6),
    ADD COLUMN price_currency    text,
    ADD COLUMN reported_at       timestamptz;

COMMENT ON COLUMN nudgel.message_receipts.operator_reported IS
    'Operator the carrier reported (DLR networkCode/mccMnc), beside operator (predicted from the prefix; numbers are portable).';
COMMENT ON COLUMN nudgel.message_receipts.network_code IS 'MCC+MNC the carrier reported.';
COMMENT ON COLUMN nudgel.message_receipts.price_amount IS
    'Price the carrier reported in a DLR, in price_currency (any ISO 4217 code, EUR included).';
COMMENT ON COLUMN nudgel.message_receipts.reported_at IS 'When the last delivery report was applied.';

-- The expiry sweep: sent receipts, oldest submission first.
CREATE INDEX message_receipts_sent_submitted_idx
    ON nudgel.message_receipts (submitted_at)
    WHERE status = 'sent';

-- One row per carrier report, whatever it did (applied, unchanged, refused,
-- intermediate, or unmatched when its receipt never came). source is the
-- report's Kafka record (topic/partition/offset): a redelivered record
-- writes nothing twice.
CREATE TABLE nudgel.message_receipt_reports (
    id                 bigserial PRIMARY KEY,
    message_id         uuid REFERENCES nudgel.message_receipts (message_id) ON DELETE CASCADE,
    gateway            text NOT NULL,
    gateway_message_id text NOT NULL,
    status             text NOT NULL,
    raw_status         text,
    outcome            text NOT NULL
        CONSTRAINT message_receipt_reports_outcome_check
        CHECK (outcome IN ('applied', 'unchanged', 'refused', 'intermediate', 'unmatched')),
    from_status        text,
    to_status          text,
    error_code         text,
    error_message      text,
    network_code       text,
    operator           text,
    price_amount       numeric(14,6),
    price_currency     text,
    done_at            timestamptz,
    received_at        timestamptz,
    source             text NOT NULL,
    at                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_receipt_reports_source UNIQUE (source)
);

COMMENT ON TABLE nudgel.message_receipt_reports IS
    'One row per carrier delivery report and what it did to the receipt (transitions are also in message_receipt_history).';

CREATE INDEX message_receipt_reports_message_idx
    ON nudgel.message_receipt_reports (message_id, at);

-- Reports that arrived before their receipt had a gateway message id (the
-- Kannel/Jasmin race): kept until the receipt is sent, or until expires_at.
CREATE TABLE nudgel.receipt_pending_reports (
    id                 bigserial PRIMARY KEY,
    gateway            text NOT NULL,
    gateway_message_id text NOT NULL,
    report             jsonb NOT NULL,
    source             text NOT NULL CONSTRAINT receipt_pending_reports_source UNIQUE,
    received_at        timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL
);

CREATE INDEX receipt_pending_reports_key_idx
    ON nudgel.receipt_pending_reports (gateway, gateway_message_id);
CREATE INDEX receipt_pending_reports_expires_idx
    ON nudgel.receipt_pending_reports (expires_at);

-- Status events of transitions made by a sweep (a pending report applied, a
-- receipt expired), written in the transition's transaction and deleted once
-- Kafka acknowledged the event: a crash between the two publishes it again
-- (same id) after claimed_until.
CREATE TABLE nudgel.receipt_event_outbox (
    message_id    uuid NOT NULL REFERENCES nudgel.message_receipts (message_id) ON DELETE CASCADE,
    to_status     text NOT NULL,
    event_id      text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (message_id, to_status)
);

CREATE INDEX receipt_event_outbox_claimed_idx ON nudgel.receipt_event_outbox (claimed_until);

-- The deterministic status event id of core/src/event.c (nudgel_event_id()):
-- UUIDv8 of SHA-256(subject "\n" type "\n" attempt). Kept equal to it: the
-- integration test compares the ids written on history rows with the ids of
-- the events published.
CREATE FUNCTION nudgel.status_event_id(p_subject text, p_type text, p_attempt integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    d bytea := sha256(convert_to(p_subject || E'\n' || p_type || E'\n' || p_attempt::text, 'UTF8'));
    h text;
BEGIN
    d := set_byte(d, 6, (get_byte(d, 6) & 15) | 128);
    d := set_byte(d, 8, (get_byte(d, 8) & 63) | 128);
    h := encode(substring(d FROM 1 FOR 16), 'hex');
    RETURN substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-' ||
           substr(h, 17, 4) || '-' || substr(h, 21, 12);
END
$$;

-- One report (p: the JSON receipt_dlrs.c writes: gateway, gateway_message_id,
-- target — the receipt state it asks for, absent for an intermediate report
-- —, status, raw_status, error_code, error_message, network_code, operator,
-- price_amount, price_currency, done_at, received_at, source), under the
-- receipt's row lock:
--   pending       no receipt with that id yet, or one not sent yet: kept in
--                 receipt_pending_reports (until p_pending_ttl_s)
--   intermediate  no move; the reported network and price are recorded (while
--                 the receipt is sent: a stale one after the final changes nothing)
--   applied       moved (forward-only), history row with the event id,
--                 outbox row when p_outbox (a sweep: no Kafka record to
--                 redeliver)
--   unchanged     the receipt is already in that state (a replay)
--   refused       a backwards or sideways move (a late report)
-- Every outcome but pending writes a message_receipt_reports row.
CREATE FUNCTION nudgel.receipt_apply_report(p jsonb, p_pending_ttl_s bigint, p_outbox boolean)
RETURNS TABLE (outcome text, from_status text, receipt nudgel.message_receipts)
LANGUAGE plpgsql
AS $$
DECLARE
    r      nudgel.message_receipts%ROWTYPE;
    tgt    text := p->>'target';
    now_ts timestamptz := clock_timestamp();
    res    text;
    prev   text;
    ev     text;
    cur    text := CASE WHEN p->>'price_currency' IN ('KES', 'NGN', 'UGX', 'USD')
                        THEN p->>'price_currency' END;
BEGIN
    SELECT m.* INTO r FROM nudgel.message_receipts m
     WHERE m.gateway = p->>'gateway' AND m.gateway_message_id = p->>'gateway_message_id'
     ORDER BY m.message_id LIMIT 1
       FOR UPDATE;
    IF NOT FOUND OR r.status IN ('accepted', 'submitting') THEN
        INSERT INTO nudgel.receipt_pending_reports (gateway, gateway_message_id, report, source,
                                                    expires_at)
        VALUES (p->>'gateway', p->>'gateway_message_id', p, p->>'source',
                now_ts + make_interval(secs => p_pending_ttl_s))
        ON CONFLICT (source) DO NOTHING;
        outcome := 'pending';
        RETURN NEXT;
        RETURN;
    END IF;
    prev := r.status;
    IF tgt IS NULL THEN
        res := 'intermediate';
    ELSIF r.status = tgt THEN
        res := 'unchanged';
    ELSIF nudgel.receipt_transition_allowed(r.status, tgt) THEN
        res := 'applied';
    ELSE
        res := 'refused';
    END IF;
    IF res = 'applied' THEN
        ev := nudgel.status_event_id(r.message_id::text, 'ai.nudgel.message.' || tgt, r.attempt);
        UPDATE nudgel.message_receipts m
           SET status = tgt,
               error_code = coalesce(p->>'error_code', m.error_code),
               error_message = coalesce(p->>'error_message', m.error_message),
               final_at = coalesce(m.final_at, now_ts),
               updated_at = now_ts,
               operator_reported = coalesce(p->>'operator', m.operator_reported),
               network_code = coalesce(p->>'network_code', m.network_code),
               price_amount = coalesce((p->>'price_amount')::numeric, m.price_amount),
               price_currency = coalesce(p->>'price_currency', m.price_currency),
               cost_amount = CASE WHEN m.cost_amount IS NULL AND cur IS NOT NULL
                                  THEN (p->>'price_amount')::numeric ELSE m.cost_amount END,
               cost_currency = CASE WHEN m.cost_amount IS NULL AND cur IS NOT NULL
                                    THEN cur ELSE m.cost_currency END,
               reported_at = now_ts
         WHERE m.message_id = r.message_id
        RETURNING m.* INTO r;
        INSERT INTO nudgel.message_receipt_history (message_id, from_status, to_status, event_id,
                                                    detail, at)
        VALUES (r.message_id, prev, tgt, ev,
                jsonb_strip_nulls(jsonb_build_object('source', 'dlr', 'attempt', r.attempt,
                    'gateway', r.gateway, 'gateway_message_id', r.gateway_message_id,
                    'raw_status', p->>'raw_status', 'error_code', p->>'error_code',
                    'report', p->>'source')),
                now_ts)
        ON CONFLICT DO NOTHING;
        IF p_outbox THEN
            INSERT INTO nudgel.receipt_event_outbox (message_id, to_status, event_id)
            VALUES (r.message_id, tgt, ev)
            ON CONFLICT DO NOTHING;
        END IF;
    ELSIF res = 'intermediate' AND r.status = 'sent' THEN
        -- (a stale intermediate report after the final one changes nothing)
        UPDATE nudgel.message_receipts m
           SET operator_reported = coalesce(p->>'operator', m.operator_reported),
               network_code = coalesce(p->>'network_code', m.network_code),
               price_amount = coalesce((p->>'price_amount')::numeric, m.price_amount),
               price_currency = coalesce(p->>'price_currency', m.price_currency),
               reported_at = now_ts, updated_at = now_ts
         WHERE m.message_id = r.message_id
        RETURNING m.* INTO r;
    END IF;
    INSERT INTO nudgel.message_receipt_reports (message_id, gateway, gateway_message_id, status,
        raw_status, outcome, from_status, to_status, error_code, error_message, network_code,
        operator, price_amount, price_currency, done_at, received_at, source)
    VALUES (r.message_id, p->>'gateway', p->>'gateway_message_id', p->>'status',
            p->>'raw_status', res, prev, r.status, p->>'error_code', p->>'error_message',
            p->>'network_code', p->>'operator', (p->>'price_amount')::numeric,
            p->>'price_currency', (p->>'done_at')::timestamptz, (p->>'received_at')::timestamptz,
            p->>'source')
    ON CONFLICT (source) DO NOTHING;
    outcome := res;
    from_status := prev;
    receipt := r;
    RETURN NEXT;
END
$$;

-- A batch of reports from Kafka (p_reports: a JSON array, each with "ord"),
-- in order. The receipts they name are locked first, in message id order
-- (the order of the messages worker's batches), so concurrent batches do not
-- deadlock; each report then runs as receipt_apply_report() with a fresh
-- snapshot, so two reports of one receipt in a batch see each other.
CREATE FUNCTION nudgel.receipt_apply_dlrs(p_reports jsonb, p_pending_ttl_s bigint)
RETURNS TABLE (ord integer, outcome text, from_status text, receipt nudgel.message_receipts)
LANGUAGE plpgsql
AS $$
DECLARE
    e jsonb;
    x record;
BEGIN
    PERFORM 1 FROM nudgel.message_receipts m
      JOIN jsonb_to_recordset(p_reports) AS i(gateway text, gateway_message_id text)
        ON m.gateway = i.gateway AND m.gateway_message_id = i.gateway_message_id
     ORDER BY m.message_id
       FOR UPDATE OF m;
    FOR e IN SELECT a.value FROM jsonb_array_elements(p_reports) WITH ORDINALITY AS a(value, n)
              ORDER BY a.n
    LOOP
        SELECT * INTO x FROM nudgel.receipt_apply_report(e, p_pending_ttl_s, false);
        ord := (e->>'ord')::integer;
        outcome := x.outcome;
        from_status := x.from_status;
        receipt := x.receipt;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The pending sweep: up to p_limit kept reports whose receipt has been sent
-- meanwhile are applied (events through the outbox) and deleted; up to
-- p_limit whose TTL passed are deleted and recorded as unmatched. Several
-- updaters may sweep at once (SKIP LOCKED). Returns the counts.
CREATE FUNCTION nudgel.receipt_apply_pending(p_limit integer)
RETURNS TABLE (applied integer, unmatched integer)
LANGUAGE plpgsql
AS $$
DECLARE
    pr record;
    x  record;
BEGIN
    applied := 0;
    FOR pr IN SELECT p.id, p.report FROM nudgel.receipt_pending_reports p
               WHERE EXISTS (SELECT 1 FROM nudgel.message_receipts m
                              WHERE m.gateway = p.gateway
                                AND m.gateway_message_id = p.gateway_message_id
                                AND m.status NOT IN ('accepted', 'submitting'))
               ORDER BY p.id LIMIT p_limit
                 FOR UPDATE OF p SKIP LOCKED
    LOOP
        SELECT * INTO x FROM nudgel.receipt_apply_report(pr.report, 0, true);
        IF x.outcome <> 'pending' THEN
            DELETE FROM nudgel.receipt_pending_reports WHERE id = pr.id;
            applied := applied + 1;
        END IF;
    END LOOP;
    WITH due AS (
        SELECT p.id FROM nudgel.receipt_pending_reports p
         WHERE p.expires_at < clock_timestamp()
         ORDER BY p.expires_at LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM nudgel.receipt_pending_reports p USING due WHERE p.id = due.id
        RETURNING p.*),
    rec AS (
        INSERT INTO nudgel.message_receipt_reports (gateway, gateway_message_id, status,
            raw_status, outcome, error_code, error_message, network_code, operator, done_at,
            received_at, source)
        SELECT g.gateway, g.gateway_message_id, g.report->>'status', g.report->>'raw_status',
               'unmatched', g.report->>'error_code', g.report->>'error_message',
               g.report->>'network_code', g.report->>'operator',
               (g.report->>'done_at')::timestamptz, (g.report->>'received_at')::timestamptz,
               g.source
          FROM gone g
        ON CONFLICT (source) DO NOTHING)
    SELECT count(*)::integer INTO unmatched FROM gone;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION nudgel.receipt_apply_report(jsonb, bigint, boolean) IS
    'One carrier delivery report, forward-only (nudgel-receipts); see receipt_dlrs.c.';
