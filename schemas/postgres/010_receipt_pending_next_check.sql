-- The pending sweep looks at each kept report when it is due (issue 12).
-- Runs inside the migration runner's transaction: no BEGIN/COMMIT here.
--
-- nudgel.receipt_apply_pending() (004, 008) walked the kept reports in
-- arrival order, probing each one's receipt, until it had a batch that could
-- be applied, and bounded the expired ones with clock_timestamp() (volatile,
-- so no index condition). Every sweep, each second, so read every report
-- kept: reports that race their `sent` are applied within a sweep or two, but
-- reports whose receipt never comes (a carrier account shared with another
-- platform, another system's message ids) stay for receipts.pending_ttl_s, 7
-- days by default, and each sweep walked past all of them.
--
-- Now each kept report has a time for its next look. A sweep takes the
-- reports due (oldest look first, up to its batch), applies those whose
-- receipt is sent or final, and sets the next look of the others a tenth of
-- their age ahead (1 s to 5 min): a report that beat its `sent` by a moment
-- is looked at each second, one an hour old every 5 minutes. Expired
-- reports are a range of their index (now(), fixed for the statement).
-- Receipts are still locked in message id order (008). It also returns how
-- many reports it looked at (looked): a full batch means more may be due, and
-- the updater sweeps again at once. A report whose `sent` lands late is
-- applied up to a tenth of its age after it.

ALTER TABLE nudgel.receipt_pending_reports
    ADD COLUMN next_check_at timestamptz NOT NULL DEFAULT now();

COMMENT ON COLUMN nudgel.receipt_pending_reports.next_check_at IS
    'When the pending sweep looks for this report''s sent receipt again '
    '(nudgel.receipt_apply_pending(): a tenth of the report''s age ahead, 1 s to 5 min).';

CREATE INDEX receipt_pending_reports_next_check_idx
    ON nudgel.receipt_pending_reports (next_check_at);

DROP FUNCTION nudgel.receipt_apply_pending(integer);

CREATE FUNCTION nudgel.receipt_apply_pending(p_limit integer)
RETURNS TABLE (applied integer, unmatched integer, looked integer)
LANGUAGE plpgsql
AS $$
DECLARE
    pr  record;
    x   record;
    due bigint[];
    ids bigint[];
BEGIN
    applied := 0;
    SELECT array_agg(q.id) INTO due
      FROM (SELECT p.id FROM nudgel.receipt_pending_reports p
             WHERE p.next_check_at <= now()
             ORDER BY p.next_check_at LIMIT p_limit
               FOR UPDATE OF p SKIP LOCKED) q;
    SELECT array_agg(p.id ORDER BY p.id) INTO ids
      FROM nudgel.receipt_pending_reports p
     WHERE p.id = ANY (due)
       AND EXISTS (SELECT 1 FROM nudgel.message_receipts m
                    WHERE m.gateway = p.gateway
                      AND m.gateway_message_id = p.gateway_message_id
                      AND m.status NOT IN ('accepted', 'submitting'));
    UPDATE nudgel.receipt_pending_reports p
       SET next_check_at = now() + least(greatest((now() - p.received_at) / 10,
                                                  interval '1 second'),
                                         interval '5 minutes')
     WHERE p.id = ANY (due) AND NOT (p.id = ANY (coalesce(ids, '{}')));
    looked := coalesce(array_length(due, 1), 0);
    PERFORM 1 FROM nudgel.message_receipts m
      JOIN nudgel.receipt_pending_reports p
        ON m.gateway = p.gateway AND m.gateway_message_id = p.gateway_message_id
     WHERE p.id = ANY (ids)
     ORDER BY m.message_id
       FOR UPDATE OF m;
    FOR pr IN SELECT p.id, p.report FROM nudgel.receipt_pending_reports p
               WHERE p.id = ANY (ids)
               ORDER BY p.id
    LOOP
        SELECT * INTO x FROM nudgel.receipt_apply_report(pr.report, 0, true);
        IF x.outcome <> 'pending' THEN
            DELETE FROM nudgel.receipt_pending_reports WHERE id = pr.id;
            applied := applied + 1;
        END IF;
    END LOOP;
    WITH due_gone AS (
        SELECT p.id FROM nudgel.receipt_pending_reports p
         WHERE p.expires_at < now()
         ORDER BY p.expires_at LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    gone AS (
        DELETE FROM nudgel.receipt_pending_reports p USING due_gone WHERE p.id = due_gone.id
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
