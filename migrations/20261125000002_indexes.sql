-- The history list, filtered by status, without reading every row it skips.
--
-- `Store::list_deployments` asks for
--     WHERE (?1 IS NULL OR status = ?1) ORDER BY created_at DESC, id LIMIT ? OFFSET ?
-- One prepared statement serves both the filtered and the unfiltered list, so
-- SQLite cannot use deployments_by_status for it: it walks deployments_newest
-- and, to test the status, reads the table row of every deployment it passes,
-- including the ones OFFSET skips. With 10,000 deployments, `?status=live&page=40`
-- read ~6,200 rows per request (each of 8 connections through its own 2 MB page
-- cache): the portal served it at p50 40-48 ms, p99 107-170 ms, ~160 req/s,
-- and grew from 40 to 68 MB RSS (bench/portal.sh, 2 cores, wrk -c8).
--
-- With the status in the index the filter is decided on index entries alone,
-- and only the 25 rows shown are read from the table: p50 8-9 ms, p99 15-20 ms,
-- ~900 req/s, 49 MB RSS. The new index does everything deployments_newest
-- did, so it replaces it rather than adding a third index to every write.
DROP INDEX deployments_newest;
CREATE INDEX deployments_newest ON deployments (created_at DESC, id, status);
