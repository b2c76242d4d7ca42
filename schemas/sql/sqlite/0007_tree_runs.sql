-- The tree's interior nodes in runs (issue 27), replacing `tree_hashes`; see the PostgreSQL
-- twin. The store rebuilds the nodes from the events' chain hashes when it opens.
CREATE TABLE tree_runs (
    first_rank INTEGER PRIMARY KEY,
    hashes     BLOB NOT NULL CHECK (length(hashes) BETWEEN 32 AND 3072 AND length(hashes) % 32 = 0)
);
DROP TABLE tree_hashes;
CREATE TRIGGER tree_runs_no_update BEFORE UPDATE ON tree_runs
BEGIN SELECT RAISE(ABORT, 'the tree is insert-only'); END;
CREATE TRIGGER tree_runs_no_delete BEFORE DELETE ON tree_runs
BEGIN SELECT RAISE(ABORT, 'the tree is insert-only'); END;
