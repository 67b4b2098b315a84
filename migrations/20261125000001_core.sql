-- The core state of CloudPulse.
--
-- What a person asked for (deployments), the work done for it (jobs and their
-- steps), what exists in AWS because of it (resources), what happened to it
-- (events), what was measured (samples) and what things cost (prices).
--
-- States are TEXT with CHECK constraints, so a misspelt state is refused by the
-- database rather than stored. Times are RFC 3339 text in UTC, which sorts in
-- time order. The SQL stays portable so the same schema can move to PostgreSQL.

CREATE TABLE deployments (
    id           TEXT PRIMARY KEY,            -- UUID
    name         TEXT NOT NULL,
    region       TEXT NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('deploying', 'live', 'failed', 'tearing_down', 'torn_down')),
    params       TEXT NOT NULL,               -- JSON: the validated parameters
    outputs      TEXT NOT NULL DEFAULT '{}',  -- JSON: app URL, main resource ids
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    torn_down_at TEXT
);

-- A name may be reused once its deployment is gone, never while it exists.
CREATE UNIQUE INDEX deployments_name_in_use ON deployments (name) WHERE status <> 'torn_down';
-- The history list: newest first.
CREATE INDEX deployments_newest ON deployments (created_at DESC, id);
CREATE INDEX deployments_by_status ON deployments (status, created_at DESC);

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,         -- UUID
    deployment_id   TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('deploy', 'teardown')),
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    -- Who asked for it; the timeline shows it.
    source          TEXT NOT NULL
                    CHECK (source IN ('browser', 'api', 'cli', 'ttl', 'cost_cap', 'system')),
    -- A client's Idempotency-Key: the same key never creates a second job.
    idempotency_key TEXT UNIQUE,
    error           TEXT,
    -- Set by a cancel request; the runner starts no new step once it is 1.
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT
);

CREATE INDEX jobs_by_deployment ON jobs (deployment_id, created_at);
-- Start-up looks for work that a crash interrupted.
CREATE INDEX jobs_unfinished ON jobs (status) WHERE status IN ('pending', 'running');

-- One node of a job's DAG. Its state is committed before and after every AWS
-- call, so a restarted portal resumes exactly where it stopped.
CREATE TABLE steps (
    job_id        TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,              -- e.g. 'nat_gateway:us-east-1a'
    depends_on    TEXT NOT NULL DEFAULT '[]', -- JSON array of step keys
    status        TEXT NOT NULL
                  CHECK (status IN ('pending', 'running', 'done', 'failed', 'skipped')),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    started_at    TEXT,
    finished_at   TEXT,
    error_code    TEXT,                       -- the AWS error code, verbatim
    error_message TEXT,                       -- the AWS error message, verbatim
    error_hint    TEXT,                       -- what a person can do about it
    request_id    TEXT,                       -- the AWS request id of the failed call
    outputs       TEXT NOT NULL DEFAULT '{}', -- JSON
    progress      TEXT,                       -- what a long step is waiting for
    PRIMARY KEY (job_id, key)
);

-- Every AWS resource a deployment created or adopted, written the moment its
-- id is known, so nothing can be created and then forgotten.
CREATE TABLE resources (
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,              -- 'vpc', 'subnet', 'nat_gateway', ...
    aws_id        TEXT NOT NULL,
    arn           TEXT,
    step_key      TEXT NOT NULL,
    region        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    deleted_at    TEXT,
    PRIMARY KEY (deployment_id, kind, aws_id)
);

CREATE INDEX resources_still_there ON resources (deployment_id) WHERE deleted_at IS NULL;

-- One timeline per deployment: job steps, scaling activities, alarm
-- transitions, chaos actions, budget decisions.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    source        TEXT,
    message       TEXT NOT NULL,
    data          TEXT NOT NULL DEFAULT '{}'  -- JSON
);

CREATE INDEX events_by_deployment ON events (deployment_id, at);

-- Time series for the charts. `resolution` is 0 for raw samples and 60 for
-- minutely averages that replace raw data after retention.
CREATE TABLE samples (
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    series        TEXT NOT NULL,              -- 'cpu', 'desired', 'healthy_targets', 'cpu:i-…'
    at            INTEGER NOT NULL,           -- unix seconds
    resolution    INTEGER NOT NULL DEFAULT 0 CHECK (resolution >= 0),
    value         REAL NOT NULL,
    PRIMARY KEY (deployment_id, series, resolution, at)
);

-- The price table behind estimates and accrued cost, with the date it holds for.
CREATE TABLE prices (
    region TEXT NOT NULL,
    item   TEXT NOT NULL,                     -- 'nat_gateway_hour', 't3.micro_hour', ...
    unit   TEXT NOT NULL,
    usd    REAL NOT NULL CHECK (usd >= 0),
    as_of  TEXT NOT NULL,
    PRIMARY KEY (region, item)
);
