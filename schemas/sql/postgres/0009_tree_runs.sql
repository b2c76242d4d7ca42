-- The tree's stored hashes in runs (issue 27): each append stores its new hashes (consecutive
-- stored-hash indexes) as one row, or a few, rather than one row per hash: `hashes` holds
-- those from `first_idx` on, 32 bytes each, at most 96 per row (3 KiB: stored in its page,
-- never compressed, which a hash would not be anyway). A stored hash is found by the run that
-- starts at or before its index: one index probe, so a root or a proof still reads O(log n)
-- rows. Insert-only, like the table it replaces, whose rows become runs of one.
CREATE TABLE tree_runs (
    first_idx bigint PRIMARY KEY,
    hashes    bytea  NOT NULL CHECK (length(hashes) BETWEEN 32 AND 3072 AND length(hashes) % 32 = 0)
);
ALTER TABLE tree_runs ALTER COLUMN hashes SET STORAGE PLAIN;
INSERT INTO tree_runs (first_idx, hashes) SELECT idx, hash FROM tree_hashes;
DROP TABLE tree_hashes;
CREATE TRIGGER tree_runs_insert_only BEFORE UPDATE OR DELETE ON tree_runs
    FOR EACH ROW EXECUTE FUNCTION lw_events_append_only();
CREATE TRIGGER tree_runs_no_truncate BEFORE TRUNCATE ON tree_runs
    FOR EACH STATEMENT EXECUTE FUNCTION lw_events_append_only();
