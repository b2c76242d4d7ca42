-- A data key archived under a legal hold (R21); see the PostgreSQL twin.
ALTER TABLE data_keys ADD COLUMN archived_at TEXT;
