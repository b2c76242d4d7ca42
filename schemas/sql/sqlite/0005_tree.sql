-- The log as an RFC 6962 Merkle tree (issue 27); see the PostgreSQL twin.
CREATE TABLE tree_hashes (
    idx   INTEGER PRIMARY KEY,
    hash  BLOB NOT NULL CHECK (length(hash) = 32)
);
CREATE TRIGGER tree_hashes_no_update BEFORE UPDATE ON tree_hashes
BEGIN SELECT RAISE(ABORT, 'the tree is insert-only'); END;
CREATE TRIGGER tree_hashes_no_delete BEFORE DELETE ON tree_hashes
BEGIN SELECT RAISE(ABORT, 'the tree is insert-only'); END;
