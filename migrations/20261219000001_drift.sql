-- Drift: where a live stack no longer matches its parameters.
--
-- One row per difference a check sees, kept from the moment it is first
-- seen until a check no longer sees it (then the row goes and the timeline
-- says so). `scope` says which check owns the row: 'poll' for what the
-- telemetry poll reads every cycle (the group's size and bounds), 'full'
-- for what the drift check reads; a check replaces the rows of its own
-- scope, a full one all of them. `id` is stable for the same difference
-- (see portal/core/src/drift.rs), so a finding keeps its first sighting.
CREATE TABLE drift_findings (
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    resource_kind TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    field         TEXT NOT NULL,
    expected      TEXT NOT NULL,
    actual        TEXT NOT NULL,
    breaks        TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('poll', 'full')),
    first_seen    TEXT NOT NULL,
    last_seen     TEXT NOT NULL,
    PRIMARY KEY (deployment_id, id)
);

-- When a full drift check last ran on the deployment.
ALTER TABLE deployments ADD COLUMN drift_checked_at TEXT;

-- `events.kind` gains 'drift'. The table is made again as in
-- 20261216000001_event_kinds.sql, which says why and how.
CREATE TABLE events_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL
                  CHECK (kind IN ('job', 'chaos', 'recovery', 'orphans', 'budget', 'system',
                                  'instance', 'target', 'scaling', 'capacity', 'alarm', 'uptime',
                                  'drift')),
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
