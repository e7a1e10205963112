-- Claims instead of session advisory locks held over HTTP calls (issue 16). A poster
-- used to keep a pooled connection checked out (its advisory lock) for a whole Slack,
-- SMTP or status page call, so more after-ack workers starved the database pool. Now a
-- claim is a token written to the row and committed before the call (``claimed_by``:
-- "<owner>/<nonce>", ``claim_expires_at``), cleared after it by the claimant; no
-- connection is held in between (bot.persistence.claims).
--
-- A claim stops counting when it expires or when its owner is gone: every process holds
-- one session advisory lock on a dedicated connection of its own, (namespace "live",
-- hashtext(owner)), which the server frees when the process dies, just as it freed the
-- advisory locks this replaces. claim_alive looks that lock up.
-- (PostgreSQL docs, "pg_locks": an advisory lock on two int4 keys shows the first key in
-- classid, the second in objid, and objsubid 2.)
CREATE FUNCTION claim_alive(claim text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 2
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND classid = 1818850917::oid  -- 0x6C697665, "live"
          AND objid = (hashtext(split_part(claim, '/', 1))::bigint & 4294967295)::oid)
$$;

ALTER TABLE outbox
    ADD COLUMN claimed_by        text,
    ADD COLUMN claim_expires_at  timestamptz;

ALTER TABLE statuspage_incidents
    ADD COLUMN claimed_by        text,
    ADD COLUMN claim_expires_at  timestamptz;

-- Claims on a name with no row of its own (the release watcher's episode keys). A row
-- lives while its claim does: the claimant deletes it when done.
CREATE TABLE claims (
    key               text        PRIMARY KEY,
    claimed_by        text        NOT NULL,
    claim_expires_at  timestamptz NOT NULL
);
