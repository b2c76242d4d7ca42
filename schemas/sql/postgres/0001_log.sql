-- The log: events, the head row every writer locks, and the wrapped data keys.

CREATE TABLE log_head (
    id        smallint PRIMARY KEY CHECK (id = 1),
    position  bigint   NOT NULL,
    hash      bytea    NOT NULL
);
INSERT INTO log_head (id, position, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE events (
    position        bigint      PRIMARY KEY,
    stream          text        NOT NULL,
    version         bigint      NOT NULL,
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor           text        NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid,
    -- The sealed payload, byte for byte as hashed: personal fields are ciphertext here.
    data            text        NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    CONSTRAINT events_stream_version UNIQUE (stream, version)
);
CREATE INDEX events_type_position ON events (event_type, position);

-- One data key per (subject, category), wrapped by the master key. Deleting a row is
-- erasure: every field it sealed reads as erased from then on.
CREATE TABLE data_keys (
    key_id      uuid        PRIMARY KEY,
    subject     text        NOT NULL,
    category    text        NOT NULL,
    wrapped     bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT data_keys_subject_category UNIQUE (subject, category)
);

-- The log is append-only: rows are never updated or deleted through SQL.
CREATE FUNCTION lw_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END;
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION lw_events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION lw_events_append_only();
