-- The pending sweep locks its receipts in message id order (issue 11).
-- Runs inside the migration runner's transaction: no BEGIN/COMMIT here.
--
-- Every writer of nudgel.message_receipts that locks several rows in one
-- transaction takes them in message id order: the messages worker's batches
-- (receipt_claims.c, receipt_records.c) and a batch of delivery reports
-- (nudgel.receipt_apply_dlrs(), 004). The pending sweep of 004 did not: it
-- applied its kept reports one by one in arrival order (receipt_pending_reports
-- id), each locking its receipt as it went, so it could hold B and wait for A
-- while a report batch held A and waited for B. Postgres then aborts one of
-- the two ("deadlock detected"); the updater retries, but a batch that fails
-- goes on one report per statement for a while. Seen once in a 20 000-message
-- end-to-end run with early and duplicated reports
-- (tests/integration/test_dlr_e2e.py); reproduced in
-- test_receipts_dlr.py::test_pending_sweep_locks_receipts_in_message_id_order.
--
-- Now the sweep picks its reports (SKIP LOCKED, as before), locks their
-- receipts in message id order, and only then applies the reports in arrival
-- order (so two reports of one receipt still apply in the order they came).
-- Same signature, same results.

CREATE OR REPLACE FUNCTION nudgel.receipt_apply_pending(p_limit integer)
RETURNS TABLE (applied integer, unmatched integer)
LANGUAGE plpgsql
AS $$
DECLARE
    pr  record;
    x   record;
    ids bigint[];
BEGIN
    applied := 0;
    SELECT array_agg(q.id ORDER BY q.id) INTO ids
      FROM (SELECT p.id FROM nudgel.receipt_pending_reports p
             WHERE EXISTS (SELECT 1 FROM nudgel.message_receipts m
                            WHERE m.gateway = p.gateway
                              AND m.gateway_message_id = p.gateway_message_id
                              AND m.status NOT IN ('accepted', 'submitting'))
             ORDER BY p.id LIMIT p_limit
               FOR UPDATE OF p SKIP LOCKED) q;
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
