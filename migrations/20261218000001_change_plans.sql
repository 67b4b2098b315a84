-- Changing a live stack: plans, and the job that applies one.
--
-- A plan says what a change of parameters does to each resource, without
-- touching AWS. It is made against one version of the deployment's
-- parameters (`deployments.params_version`, moved by every apply and every
-- budget change), and an apply of a plan whose version is no longer the
-- deployment's is refused: the plan would describe a change from parameters
-- that are no longer there.
ALTER TABLE deployments ADD COLUMN params_version INTEGER NOT NULL DEFAULT 1;

-- `jobs.kind` gains 'apply'. SQLite cannot change a CHECK, so `jobs` is made
-- again, and with it the two tables that refer to it: dropping `jobs` while
-- they still did would delete their rows (ON DELETE CASCADE). New tables
-- first, every row copied (steps with their rowid: a job lists its steps in
-- rowid order), the old ones dropped children first, the new ones renamed
-- (SQLite points the children's references at the new names), the indexes
-- made again. The migrator runs the file in one transaction.
CREATE TABLE jobs_new (
    id              TEXT PRIMARY KEY,         -- UUID
    deployment_id   TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('deploy', 'teardown', 'apply')),
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    source          TEXT NOT NULL
                    CHECK (source IN ('browser', 'api', 'cli', 'ttl', 'cost_cap', 'system')),
    idempotency_key TEXT UNIQUE,
    error           TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    waiting         TEXT
);

CREATE TABLE steps_new (
    job_id        TEXT NOT NULL REFERENCES jobs_new (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    depends_on    TEXT NOT NULL DEFAULT '[]',
    status        TEXT NOT NULL
                  CHECK (status IN ('pending', 'running', 'done', 'failed', 'skipped')),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    started_at    TEXT,
    finished_at   TEXT,
    error_code    TEXT,
    error_message TEXT,
    error_hint    TEXT,
    request_id    TEXT,
    outputs       TEXT NOT NULL DEFAULT '{}',
    progress      TEXT,
    PRIMARY KEY (job_id, key)
);

CREATE TABLE idempotency_keys_new (
    scope       TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_id      TEXT NOT NULL REFERENCES jobs_new (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);

INSERT INTO jobs_new (id, deployment_id, kind, status, source, idempotency_key, error,
                      cancel_requested, created_at, started_at, finished_at, waiting)
    SELECT id, deployment_id, kind, status, source, idempotency_key, error,
           cancel_requested, created_at, started_at, finished_at, waiting
      FROM jobs;
INSERT INTO steps_new (rowid, job_id, key, depends_on, status, attempts, started_at,
                       finished_at, error_code, error_message, error_hint, request_id,
                       outputs, progress)
    SELECT rowid, job_id, key, depends_on, status, attempts, started_at,
           finished_at, error_code, error_message, error_hint, request_id,
           outputs, progress
      FROM steps;
INSERT INTO idempotency_keys_new (scope, fingerprint, job_id, created_at)
    SELECT scope, fingerprint, job_id, created_at FROM idempotency_keys;

DROP TABLE idempotency_keys;
DROP TABLE steps;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
ALTER TABLE steps_new RENAME TO steps;
ALTER TABLE idempotency_keys_new RENAME TO idempotency_keys;

CREATE INDEX jobs_by_deployment ON jobs (deployment_id, created_at);
CREATE INDEX jobs_unfinished ON jobs (status) WHERE status IN ('pending', 'running');

-- One plan: the parameters before and after, the answer as shown, and the
-- apply job once one ran it (applying a plan twice gives that job back).
CREATE TABLE change_plans (
    id            TEXT PRIMARY KEY,           -- UUID
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,           -- deployments.params_version it was made against
    before        TEXT NOT NULL,              -- JSON: the parameters then
    after         TEXT NOT NULL,              -- JSON: the parameters it applies
    plan          TEXT NOT NULL,              -- JSON: the plan as answered
    source        TEXT NOT NULL
                  CHECK (source IN ('browser', 'api', 'cli', 'ttl', 'cost_cap', 'system')),
    created_at    TEXT NOT NULL,
    job_id        TEXT REFERENCES jobs (id) ON DELETE SET NULL
);

CREATE INDEX change_plans_by_deployment ON change_plans (deployment_id, created_at);
