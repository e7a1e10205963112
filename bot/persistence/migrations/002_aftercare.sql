-- rollback-bot schema v2: after the steps. Facts per rollback (when the steps finished,
-- when service was restored, the status-page incident), stability monitors and their
-- samples, post-incident reminders, and the outbox that makes each Slack post happen once.

CREATE TABLE aftercare (
    rollback_id            bigint      PRIMARY KEY REFERENCES rollbacks (id) ON DELETE CASCADE,
    steps_completed_at     timestamptz NOT NULL,
    restored_at            timestamptz,            -- verification passed
    statuspage_incident_id text,
    statuspage_creating    boolean     NOT NULL DEFAULT false  -- a create was sent
);

-- One monitoring window. ``key`` makes creation idempotent (a resumed executor or a
-- retried job finds the window it already opened).
CREATE TABLE monitors (
    id               bigserial   PRIMARY KEY,
    rollback_id      bigint      NOT NULL REFERENCES rollbacks (id) ON DELETE CASCADE,
    key              text        NOT NULL UNIQUE,
    started_at       timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    interval_seconds double precision NOT NULL,
    status           text        NOT NULL DEFAULT 'running',  -- running|stable|unstable|superseded
    finished_at      timestamptz,
    result           jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX monitors_rollback ON monitors (rollback_id, id);

-- One row per check interval; a re-run tick reuses its row instead of measuring again.
CREATE TABLE monitor_samples (
    monitor_id    bigint      NOT NULL REFERENCES monitors (id) ON DELETE CASCADE,
    seq           integer     NOT NULL,
    at            timestamptz NOT NULL,
    error_rate    double precision,
    health_ok     boolean,
    health_detail text        NOT NULL DEFAULT '',
    latency_ms    double precision,
    notes         text        NOT NULL DEFAULT '',
    PRIMARY KEY (monitor_id, seq)
);

CREATE TABLE reminders (
    id           bigserial   PRIMARY KEY,
    rollback_id  bigint      NOT NULL REFERENCES rollbacks (id) ON DELETE CASCADE,
    kind         text        NOT NULL,                 -- review|postmortem
    due_at       timestamptz NOT NULL,                 -- the policy's deadline
    status       text        NOT NULL DEFAULT 'open',  -- open|scheduled|done
    seq          integer     NOT NULL DEFAULT 1,       -- only the job with this seq may post
    next_at      timestamptz NOT NULL,
    document     text,                                 -- post-mortem skeleton path
    created_at   timestamptz NOT NULL,
    closed_by    text,
    closed_at    timestamptz,
    UNIQUE (rollback_id, kind)
);

-- Keyed Slack posts: claimed before the call, marked sent after it. A row left 'sending'
-- with attempts > 0 means a poster died mid-call; the next one looks in Slack first.
CREATE TABLE outbox (
    key          text        PRIMARY KEY,
    rollback_id  bigint      REFERENCES rollbacks (id) ON DELETE CASCADE,
    channel      text,
    status       text        NOT NULL DEFAULT 'sending',  -- sending|sent
    attempts     integer     NOT NULL DEFAULT 0,
    ts           text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
