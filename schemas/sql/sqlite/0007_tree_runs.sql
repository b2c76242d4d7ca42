-- The tree's stored hashes in runs (issue 27); see the PostgreSQL twin.
CREATE TABLE tree_runs (
    first_idx INTEGER PRIMARY KEY,
    hashes    BLOB NOT NULL CHECK (length(hashes) BETWEEN 32 AND 3072 AND length(hashes) % 32 = 0)
);
INSERT INTO tree_runs (first_idx, hashes) SELECT idx, hash FROM tree_hashes;
DROP TABLE tree_hashes;
CREATE TRIGGER tree_runs_no_update BEFORE UPDATE ON tree_runs
BEGIN SELECT RAISE(ABORT, 'the tree is insert-only'); END;
CREATE TRIGGER tree_runs_no_delete BEFORE DELETE ON tree_runs
BEGIN SELECT RAISE(ABORT, 'the tree is insert-only'); END;
