-- The expiry sweep reads each gateway's sent receipts as a range (issue 12).
-- Runs inside the migration runner's transaction: no BEGIN/COMMIT here.
--
-- A gateway with a window of its own (receipts.expiry_by_gateway) is swept
-- as the range of this index up to its window; the other gateways as the
-- range of message_receipts_sent_submitted_idx up to the default window
-- (workers/receipts/src/receipt_dlrs.c). Before, the sweep walked
-- message_receipts_sent_submitted_idx from the oldest sent receipt up to the
-- shortest window and filtered by gateway: with one gateway at an hour and
-- the others at the 48 h default, every sweep (each second) read all of the
-- last 48 h's sent receipts.
--
-- Additive. CREATE INDEX (not CONCURRENTLY: it runs in the migration's
-- transaction) holds writes to message_receipts while it builds; it reads
-- only the rows in `sent`.

CREATE INDEX message_receipts_sent_gateway_submitted_idx
    ON nudgel.message_receipts (gateway, submitted_at)
    WHERE status = 'sent';
