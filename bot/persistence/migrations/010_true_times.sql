-- True times (issue 15): where the incident's start came from (``incident_started_at`` has
-- been a column since 001: given by the requester, the release watcher's first breach, the
-- bad revision's deploy time, or the request itself), and the data-loss window of a database
-- restore (from the restored backup's timestamp to the restore), recorded by the restore
-- step. Rows of earlier versions keep NULL: their records say what they always said.
ALTER TABLE rollbacks ADD COLUMN incident_start_source text;
ALTER TABLE rollbacks ADD COLUMN data_loss_from timestamptz;
ALTER TABLE rollbacks ADD COLUMN data_loss_to timestamptz;
