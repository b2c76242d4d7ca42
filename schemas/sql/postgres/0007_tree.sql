-- The log as an RFC 6962 Merkle tree (issue 27): leaf i is the chain hash of the event at
-- position i + 1. Each append stores the tree's new hashes here, in its own transaction, in
-- Go's stored-hash layout (idx: the stored-hash index; at most 1 + log2 n per leaf). Rows are
-- never updated or deleted. A log older than this table gets its hashes when the store
-- opens (computed from the events' chain hashes).
CREATE TABLE tree_hashes (
    idx   bigint PRIMARY KEY,
    hash  bytea  NOT NULL CHECK (length(hash) = 32)
);
CREATE TRIGGER tree_hashes_insert_only BEFORE UPDATE OR DELETE ON tree_hashes
    FOR EACH ROW EXECUTE FUNCTION lw_events_append_only();
CREATE TRIGGER tree_hashes_no_truncate BEFORE TRUNCATE ON tree_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION lw_events_append_only();
