-- rollback-bot schema v4: this database's identity. Rollback numbers restart in every
-- database (sandbox runs, benches, a second deployment), so anything kept outside the
-- database (post-mortem skeletons) is named with this id as well as the rollback's number.
-- A random id, not the server's system identifier: several databases share one server.

CREATE TABLE installation (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),  -- exactly one row
    id         text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO installation (id)
VALUES (substr(md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text), 1, 8));
