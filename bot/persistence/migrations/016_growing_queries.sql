-- Flat as history grows (issue 16). Measured from 1k to 100k historic rollbacks:
-- ``active_for_service`` 0.17 -> 22 ms and leader takeover (``recover_running``) 1.3 ->
-- 178 ms. ``active_for_service`` now names its states as literals, so the partial unique
-- index ``rollbacks_one_active_per_service`` (001) serves it, generic plan included; the
-- takeover needs an index of its own. A partial index is used by a prepared statement's
-- generic plan only when the query states the index predicate as a literal:
-- tests/integration/test_query_plans.py checks the plans the server actually uses.

-- Leader takeover: only the few 'running' rows, however many finished ones are kept.
CREATE INDEX scheduled_jobs_running ON scheduled_jobs (claimed_at) WHERE status = 'running';

-- A rollback's posts and jobs (its timeline) and the cascade of a deleted rollback.
CREATE INDEX outbox_rollback ON outbox (rollback_id);
CREATE INDEX scheduled_jobs_rollback ON scheduled_jobs (rollback_id);

-- Retention of monitor samples (bot.persistence.retention): a monitor whose samples were
-- pruned is stamped, so the hourly run looks only at finished monitors not yet pruned.
ALTER TABLE monitors ADD COLUMN samples_pruned_at timestamptz;
CREATE INDEX monitors_unpruned ON monitors (finished_at)
    WHERE samples_pruned_at IS NULL AND status <> 'running';
