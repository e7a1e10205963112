-- A rollback's Slack hold, shared by every replica (issue 16). From an approval until the
-- executor's first platform write, nothing about the rollback goes to Slack, so the
-- approval path makes no Slack call but the approvers read before the platform moves
-- (bot.usecases.thread_delivery). The hold used to live in the approving process only:
-- another replica's executor and deliverer did not see it. ``until`` bounds it (no free
-- executor, a plan whose first step writes nothing): Slack is told late, never not at all.
CREATE TABLE slack_holds (
    rollback_id  bigint      PRIMARY KEY REFERENCES rollbacks (id) ON DELETE CASCADE,
    until        timestamptz NOT NULL
);
