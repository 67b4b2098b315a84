-- `events.kind` refuses a kind the portal does not know, like every other
-- state and kind column (see 20261125000001_core.sql). The list is
-- `EventKind` in portal/core/src/model.rs; a test inserts each of its values
-- and one that is not, so the two cannot drift apart.
--
-- SQLite cannot add a CHECK to a column, so the table is made again: a new
-- one with the constraint, every row copied with its id, the AUTOINCREMENT
-- counter carried over (so ids are never reused), the old one dropped and
-- the new one renamed, then its index made again. The migrator runs the
-- whole file in one transaction: either all of it happens or none of it.
-- No other table references events, so no foreign key is in the way.

CREATE TABLE events_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL
                  CHECK (kind IN ('job', 'chaos', 'recovery', 'orphans', 'budget', 'system',
                                  'instance', 'target', 'scaling', 'capacity', 'alarm', 'uptime')),
    source        TEXT,
    message       TEXT NOT NULL,
    data          TEXT NOT NULL DEFAULT '{}'  -- JSON
);

INSERT INTO events_new (id, deployment_id, at, kind, source, message, data)
    SELECT id, deployment_id, at, kind, source, message, data FROM events;

-- The copy set the new counter to the highest id kept; the old one may be
-- higher (events of deleted deployments).
UPDATE sqlite_sequence
   SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'events')
 WHERE name = 'events_new'
   AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events');
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'events_new', seq FROM sqlite_sequence
     WHERE name = 'events'
       AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_new');

DROP TABLE events;
ALTER TABLE events_new RENAME TO events;

CREATE INDEX events_by_deployment ON events (deployment_id, at);
