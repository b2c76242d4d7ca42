-- Read models: JSON documents per view and key, with the few fields queries filter on kept
-- as typed columns (so compliance staff can also query them with SQL), and each view's
-- checkpoint: the log position its documents reflect. Documents and checkpoint change in one
-- transaction.

CREATE TABLE views (
    view     text        NOT NULL,
    key      text        NOT NULL,
    doc      jsonb       NOT NULL,
    owner    text,
    state    text,
    due_at   timestamptz,
    PRIMARY KEY (view, key)
);
CREATE INDEX views_owner ON views (view, owner, key) WHERE owner IS NOT NULL;
CREATE INDEX views_state ON views (view, state, key) WHERE state IS NOT NULL;
CREATE INDEX views_due ON views (view, due_at, key) WHERE due_at IS NOT NULL;

CREATE TABLE view_checkpoints (
    view      text   PRIMARY KEY,
    position  bigint NOT NULL
);
