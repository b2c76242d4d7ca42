-- Every checkpoint the server signed (issue 27): its tree size, root and signed note (never
-- the key). Served as the latest checkpoint and as the history auditors read. Insert-only.
CREATE TABLE log_checkpoints (
    seq        bigserial   PRIMARY KEY,
    size       bigint      NOT NULL CHECK (size >= 0),
    root       bytea       NOT NULL CHECK (length(root) = 32),
    note       text        NOT NULL,
    signed_at  timestamptz NOT NULL
);
CREATE INDEX log_checkpoints_size ON log_checkpoints (size, seq);
CREATE TRIGGER log_checkpoints_insert_only BEFORE UPDATE OR DELETE ON log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION lw_events_append_only();
CREATE TRIGGER log_checkpoints_no_truncate BEFORE TRUNCATE ON log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION lw_events_append_only();
