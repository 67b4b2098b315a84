-- The budget guard: when a deployment's time-to-live runs out, and which
-- torn-down deployment a new one was deployed again from.
--
-- The TTL and the cost cap themselves are parameters (`params.ttl_minutes`,
-- `params.cost_cap_usd`); the deadline is stored as a time because it is what
-- the guard looks for, on the clock of the cloud the portal runs against (a
-- sandbox with a time scale reaches it sooner), and because it must survive a
-- portal that was not running when it passed.
ALTER TABLE deployments ADD COLUMN expires_at TEXT;
ALTER TABLE deployments ADD COLUMN redeployed_from TEXT REFERENCES deployments (id) ON DELETE SET NULL;

-- The guard's one query: deadlines of deployments that still stand.
CREATE INDEX deployments_expiring ON deployments (expires_at)
    WHERE expires_at IS NOT NULL AND status <> 'torn_down';
CREATE INDEX deployments_redeployed_from ON deployments (redeployed_from)
    WHERE redeployed_from IS NOT NULL;
