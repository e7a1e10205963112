-- The release watcher, continued (issue 12). ``proposal``: the posted proposal's facts, so
-- it can be re-rendered once a request answers it; ``answered_by`` is that request (one per
-- episode). ``rollbacks.watch_reading``: the watcher's latest figures for a pending request,
-- shown on its message.
ALTER TABLE release_watch
    ADD COLUMN proposal     jsonb,
    ADD COLUMN answered_by  bigint;
ALTER TABLE rollbacks ADD COLUMN watch_reading jsonb;
