-- What the telemetry poller learns about a live deployment.
--
-- The Auto Scaling group's instances are not CloudPulse's resources (the group
-- makes and ends them), so they are not in `resources`; but what they cost
-- and how they lived is CloudPulse's business. The poller writes one row per
-- instance it has seen, keeps its last known state (so that a restarted
-- portal compares with what it saw before, not with nothing), and marks when
-- it left the group.
CREATE TABLE instances (
    deployment_id     TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    instance_id       TEXT NOT NULL,
    instance_type     TEXT,
    availability_zone TEXT,
    private_ip        TEXT,
    launched_at       TEXT NOT NULL,          -- EC2's launch time, else first seen
    gone_at           TEXT,                   -- first poll that did not find it
    lifecycle         TEXT,                   -- Auto Scaling's last lifecycle state
    health            TEXT,                   -- Auto Scaling's last verdict
    target_state      TEXT,                   -- the load balancer's last verdict
    target_reason     TEXT,
    PRIMARY KEY (deployment_id, instance_id)
);

CREATE INDEX instances_in_group ON instances (deployment_id) WHERE gone_at IS NULL;

-- Times the app URL did not answer. An incident is opened by the first failed
-- probe and closed by the next good one; an open one has no `ended_at`.
CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    cause         TEXT NOT NULL
);

CREATE INDEX incidents_by_deployment ON incidents (deployment_id, started_at);

-- Retention walks samples by age, across deployments.
CREATE INDEX samples_by_age ON samples (resolution, at);
