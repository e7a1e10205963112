-- The runbook's "Plan forward fix" (issue 15): one row per completed rollback, asked for at
-- completion and chased until a link is given or someone waives it with a reason. Like
-- ``reminders``, only the job whose ``seq`` is current may post, so a given or waived row
-- stays quiet and a retried job posts nothing twice.
CREATE TABLE forward_fixes (
    rollback_id  bigint      PRIMARY KEY REFERENCES rollbacks (id) ON DELETE CASCADE,
    status       text        NOT NULL DEFAULT 'open',  -- open|given|waived|expired
    seq          integer     NOT NULL DEFAULT 1,       -- only the job with this seq may post
    next_at      timestamptz NOT NULL,
    give_up_at   timestamptz NOT NULL,                 -- the last reminder, with a final note
    link         text,                                 -- validated http(s), no credentials
    root_cause   text,                                 -- scrubbed, bounded
    reason       text,                                 -- a waiver's reason
    decided_by   text,
    decided_at   timestamptz,
    created_at   timestamptz NOT NULL
);
