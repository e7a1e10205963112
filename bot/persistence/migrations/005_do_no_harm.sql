-- Do no harm: known-bad revisions, plan facts pinned at request time, cancel during
-- execution.

-- Every revision a rollback moved away from. The default target skips these; a rollback
-- *to* one needs an approver's explicit override. Clearing is audited (cleared_*), the
-- row stays as history and a later rollback away from it marks it again.
CREATE TABLE known_bad_revisions (
    service      text        NOT NULL,
    platform     text        NOT NULL,
    revision_id  text        NOT NULL,
    revision     jsonb       NOT NULL,
    rollback_id  bigint      REFERENCES rollbacks (id) ON DELETE SET NULL,
    marked_at    timestamptz NOT NULL DEFAULT now(),
    cleared_at   timestamptz,
    cleared_by   text,
    PRIMARY KEY (service, platform, revision_id)
);

-- What the approvers saw when the plan was made: the revisions with their marks, the
-- pinned backup (name, size, age), the destructive steps, a known-bad target.
ALTER TABLE rollbacks ADD COLUMN plan_facts jsonb NOT NULL DEFAULT '{}'::jsonb;
-- Cancel while executing: the executor stops before its next step, compensates, and
-- moves the rollback to cancelled itself (no second writer on the state).
ALTER TABLE rollbacks ADD COLUMN cancel_requested_by text;

-- Requests pending at upgrade time: their destructive steps come from the step rows, so
-- the two-person rule and the typed confirmation apply to them too.
UPDATE rollbacks r SET plan_facts = jsonb_build_object('destructive', (
    SELECT jsonb_agg(jsonb_build_object('kind', s.kind, 'description', s.description)
                     ORDER BY s.seq)
    FROM rollback_steps s WHERE s.rollback_id = r.id AND s.destructive))
WHERE r.state = 'pending_approval'
  AND EXISTS (SELECT 1 FROM rollback_steps s WHERE s.rollback_id = r.id AND s.destructive);
