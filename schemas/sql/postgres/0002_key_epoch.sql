-- Every deletion of data keys bumps key_epoch on the head row, under the head row's lock. A
-- writer that remembers (position, key_epoch) from its last commit can then append with one
-- round trip: lw_expect_head locks the head and refuses when either moved, in which case the
-- writer falls back to reading everything under the lock.

ALTER TABLE log_head ADD COLUMN key_epoch bigint NOT NULL DEFAULT 0;

CREATE FUNCTION lw_expect_head(expected_position bigint, expected_key_epoch bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    p bigint;
    k bigint;
BEGIN
    SELECT position, key_epoch INTO p, k FROM log_head WHERE id = 1 FOR UPDATE;
    IF p <> expected_position OR k <> expected_key_epoch THEN
        RAISE EXCEPTION 'the log head moved' USING ERRCODE = 'LW001';
    END IF;
END;
$$;
