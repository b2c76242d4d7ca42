-- The tree's interior nodes in runs (issue 27), replacing `tree_hashes`. A leaf's hash is not
-- stored: it is SHA-256(0x00 ‖ the event's chain hash), read from `events`. The interior
-- nodes (level ≥ 1) are numbered in the order the appends create them (`rank`: the node
-- completed by leaf m at level l has rank m − popcount(m) + l − 1), so an append's new nodes
-- have consecutive ranks and are stored as one row, or a few: `hashes` holds those from
-- `first_rank` on, 32 bytes each, at most 96 per row (3 KiB, kept in its page, never
-- compressed). A node is found by the run that starts at or before its rank: one index probe,
-- so a root or a proof reads O(log n) rows. Insert-only. The store rebuilds the nodes from the
-- events' chain hashes when it opens (the table starts empty here).
CREATE TABLE tree_runs (
    first_rank bigint PRIMARY KEY,
    hashes     bytea  NOT NULL CHECK (length(hashes) BETWEEN 32 AND 3072 AND length(hashes) % 32 = 0)
);
ALTER TABLE tree_runs ALTER COLUMN hashes SET STORAGE PLAIN;
DROP TABLE tree_hashes;
CREATE TRIGGER tree_runs_insert_only BEFORE UPDATE OR DELETE ON tree_runs
    FOR EACH ROW EXECUTE FUNCTION lw_events_append_only();
CREATE TRIGGER tree_runs_no_truncate BEFORE TRUNCATE ON tree_runs
    FOR EACH STATEMENT EXECUTE FUNCTION lw_events_append_only();
