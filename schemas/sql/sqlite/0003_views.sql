-- Read models (see the PostgreSQL twin).
CREATE TABLE views (
    view     TEXT NOT NULL,
    key      TEXT NOT NULL,
    doc      TEXT NOT NULL,
    owner    TEXT,
    state    TEXT,
    due_at   TEXT,
    PRIMARY KEY (view, key)
);
CREATE INDEX views_owner ON views (view, owner, key) WHERE owner IS NOT NULL;
CREATE INDEX views_state ON views (view, state, key) WHERE state IS NOT NULL;
CREATE INDEX views_due ON views (view, due_at, key) WHERE due_at IS NOT NULL;

CREATE TABLE view_checkpoints (
    view      TEXT PRIMARY KEY,
    position  INTEGER NOT NULL
);
