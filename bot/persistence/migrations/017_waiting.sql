-- Waiting holds nothing (issue 16): a step that waits on a rollout parks the rollback
-- instead of holding an executor worker. ``next_check_at`` is when an executor should look
-- again (one non-blocking status read); the lease is released meanwhile, so any replica may
-- continue it. NULL: not parked (claimable as soon as its lease allows, as before).
ALTER TABLE rollbacks ADD COLUMN next_check_at timestamptz;

-- The claim reads executing rollbacks by their next check; a thousand parked rollbacks are
-- found by this index instead of a scan of every executing row.
CREATE INDEX rollbacks_next_check ON rollbacks (next_check_at)
    WHERE state = 'executing';
