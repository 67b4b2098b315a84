-- Idempotency keys, each bound to the request it first came with.
--
-- `scope` is the operation, the deployment it acts on ('-' for a new one)
-- and the SHA-256 of the client's key: 'deploy - <hex>', 'redeploy <id>
-- <hex>', 'teardown <id> <hex>'. The same string is the job's
-- `idempotency_key`, so one key on two deployments makes two jobs.
-- `fingerprint` is the SHA-256 of the request's parameters: the same key
-- with other parameters is refused (422) instead of answered with the
-- first request's job.
CREATE TABLE idempotency_keys (
    scope       TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);
