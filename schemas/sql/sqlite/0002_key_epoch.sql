-- Every deletion of data keys bumps key_epoch (see the PostgreSQL twin).
ALTER TABLE log_head ADD COLUMN key_epoch INTEGER NOT NULL DEFAULT 0;
