-- rollback-bot schema v1: rollbacks, their steps, the audit trail, Slack request dedupe,
-- and durable timers (decision-matrix timers, expiry, monitors, reminders).

CREATE TABLE rollbacks (
    id                 bigserial PRIMARY KEY,
    service            text        NOT NULL,
    platform           text        NOT NULL,
    severity           text        NOT NULL,
    policy_mode        text        NOT NULL,
    scope              text[]      NOT NULL,
    reason             text        NOT NULL DEFAULT '',
    state              text        NOT NULL,
    requester          text        NOT NULL,
    channel_id         text        NOT NULL,
    channel_name       text        NOT NULL DEFAULT '',
    message_ts         text,
    thread_ts          text,
    current_revision   jsonb,
    target_revision    jsonb       NOT NULL,
    target             jsonb       NOT NULL,
    checklist          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    assessment         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    approver           text,
    break_glass        boolean     NOT NULL DEFAULT false,
    incident_commander text,
    incident_started_at timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz,
    approved_at        timestamptz,
    finished_at        timestamptz,
    lease_owner        text,
    lease_expires_at   timestamptz,
    last_error         text
);

-- One active rollback per service: the database, not the code path, enforces it.
CREATE UNIQUE INDEX rollbacks_one_active_per_service ON rollbacks (service)
    WHERE state IN ('pending_approval', 'approved', 'executing', 'verifying', 'monitoring',
                    'needs_attention', 'unstable', 'verification_failed');
CREATE INDEX rollbacks_claimable ON rollbacks (state, lease_expires_at)
    WHERE state IN ('approved', 'executing', 'verifying');
CREATE INDEX rollbacks_service_created ON rollbacks (service, created_at DESC);

CREATE TABLE rollback_steps (
    rollback_id  bigint      NOT NULL REFERENCES rollbacks (id) ON DELETE CASCADE,
    seq          integer     NOT NULL,
    kind         text        NOT NULL,
    description  text        NOT NULL,
    destructive  boolean     NOT NULL DEFAULT false,
    status       text        NOT NULL DEFAULT 'pending',  -- pending|started|done|failed|skipped
    attempts     integer     NOT NULL DEFAULT 0,
    params       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    result       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error        text,
    started_at   timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (rollback_id, seq)
);

CREATE TABLE audit_events (
    id           bigserial PRIMARY KEY,
    rollback_id  bigint      REFERENCES rollbacks (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text        NOT NULL,
    event        text        NOT NULL,
    from_state   text,
    to_state     text,
    detail       jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_rollback ON audit_events (rollback_id, id);

-- Slack retries and double clicks: the first delivery of a natural id wins.
CREATE TABLE processed_requests (
    key          text PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Durable timers; APScheduler on the leader only wakes them up, the table is the truth.
CREATE TABLE scheduled_jobs (
    id           bigserial PRIMARY KEY,
    kind         text        NOT NULL,
    rollback_id  bigint      REFERENCES rollbacks (id) ON DELETE CASCADE,
    due_at       timestamptz NOT NULL,
    payload      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status       text        NOT NULL DEFAULT 'pending',  -- pending|running|done|cancelled
    claimed_by   text,
    claimed_at   timestamptz,
    finished_at  timestamptz,
    result       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key   text UNIQUE
);
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (due_at) WHERE status = 'pending';

-- Configuration known to be good: recorded when a rollback ends stable, restored by
-- the restore_config step of a later rollback.
CREATE TABLE known_good_config (
    service      text        NOT NULL,
    platform     text        NOT NULL,
    snapshot     jsonb       NOT NULL,
    rollback_id  bigint      REFERENCES rollbacks (id) ON DELETE SET NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, platform)
);
