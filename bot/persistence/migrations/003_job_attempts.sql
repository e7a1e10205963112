-- A job that raises is retried with backoff and given up after a bounded number of
-- attempts instead of every second forever.
ALTER TABLE scheduled_jobs ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE scheduled_jobs ADD COLUMN last_error text;
