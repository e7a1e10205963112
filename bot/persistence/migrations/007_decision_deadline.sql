-- The decision matrix keeps time (issue 12): each request's decision deadline (the
-- severity's response time from the request, moved once by "Hotfix in progress") and who
-- reported the hotfix. Rows of earlier versions keep NULL: no deadline is shown for them.
ALTER TABLE rollbacks ADD COLUMN decision_due_at timestamptz;
ALTER TABLE rollbacks ADD COLUMN hotfix_reported_by text;
