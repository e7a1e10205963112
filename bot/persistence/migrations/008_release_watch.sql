-- The release watcher (issue 12): one row per watched service. An open episode (the
-- error-rate rule held) is ``episode_started_at``; it ends once the error rate has stayed at
-- or below the threshold for a full duration. ``snoozed_until`` silences proposals.
CREATE TABLE release_watch (
    service             text        PRIMARY KEY,
    episode_started_at  timestamptz,
    snoozed_until       timestamptz,
    snoozed_by          text,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
