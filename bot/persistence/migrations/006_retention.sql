-- Retention (bot.housekeeping): the periodic purge of bookkeeping rows reads these by age.
-- The audit trail is never purged and needs no such index.
CREATE INDEX processed_requests_created ON processed_requests (created_at);
CREATE INDEX scheduled_jobs_finished ON scheduled_jobs (COALESCE(finished_at, due_at))
    WHERE status IN ('done', 'cancelled', 'failed');
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE status = 'sent';
