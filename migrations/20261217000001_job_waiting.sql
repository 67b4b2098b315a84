-- What a job waits for before its first step, shown on its page: a deploy
-- queued behind --max-concurrent-deploys others. NULL once it runs.
ALTER TABLE jobs ADD COLUMN waiting TEXT;
