-- A stability check's due time (issue 16): the slot it was scheduled for (the window's start
-- + seq x interval), stored with the sample so the report can say how late checks ran
-- instead of silently shifting them. NULL for samples taken before this migration.
ALTER TABLE monitor_samples ADD COLUMN due_at timestamptz;
