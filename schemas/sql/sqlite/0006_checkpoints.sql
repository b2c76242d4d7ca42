-- Every checkpoint the server signed (issue 27); see the PostgreSQL twin.
CREATE TABLE log_checkpoints (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    size       INTEGER NOT NULL CHECK (size >= 0),
    root       BLOB    NOT NULL CHECK (length(root) = 32),
    note       TEXT    NOT NULL,
    signed_at  TEXT    NOT NULL
);
CREATE INDEX log_checkpoints_size ON log_checkpoints (size, seq);
CREATE TRIGGER log_checkpoints_no_update BEFORE UPDATE ON log_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are insert-only'); END;
CREATE TRIGGER log_checkpoints_no_delete BEFORE DELETE ON log_checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are insert-only'); END;
