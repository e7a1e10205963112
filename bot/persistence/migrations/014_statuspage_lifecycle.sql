-- The status page from declaration to resolution (issue 15). One row per rollback whose
-- severity opens a status page incident: the incident's id, how far through the
-- rollback's audit trail the page has been brought (``applied_through``: the last audit
-- event turned into an incident update, or passed over), and which event's call may be in
-- flight (``sending_event``: set before the HTTP call, so a run after a crash looks at the
-- page before sending that update again).
CREATE TABLE statuspage_incidents (
    rollback_id      bigint PRIMARY KEY REFERENCES rollbacks (id) ON DELETE CASCADE,
    incident_id      text,
    applied_through  bigint NOT NULL DEFAULT 0,
    sending_event    bigint
);

-- Incidents the previous version opened (at restore or on failure) keep being followed;
-- their past is not replayed onto the page.
INSERT INTO statuspage_incidents (rollback_id, incident_id, applied_through)
SELECT a.rollback_id, a.statuspage_incident_id,
       COALESCE((SELECT max(e.id) FROM audit_events e WHERE e.rollback_id = a.rollback_id), 0)
FROM aftercare a
WHERE a.statuspage_incident_id IS NOT NULL;
