-- Resends (issue 10, item 6): `nudgel-admin dlq replay --resend` sends a
-- failed message again as a NEW message (its own id, derived from the
-- original's id and a resend generation) whose receipt names the original.
-- The original's receipt is never touched: the states stay forward-only.
-- Runs inside the migration runner's transaction: no BEGIN/COMMIT here.
-- Additive only.

ALTER TABLE nudgel.message_receipts
    ADD COLUMN resent_from uuid;

COMMENT ON COLUMN nudgel.message_receipts.resent_from IS
    'For a message created by `nudgel-admin dlq replay --resend`: the message it sends again '
    '(that receipt stays as it was). Also data.resent_from of its status events.';

CREATE INDEX message_receipts_resent_from_idx
    ON nudgel.message_receipts (resent_from)
    WHERE resent_from IS NOT NULL;
