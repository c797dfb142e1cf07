-- The hub's schema (SQLite). Times are RFC 3339 UTC text; seqs and versions are integers.

CREATE TABLE apps (
    id          TEXT PRIMARY KEY NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE instances (
    app_id          TEXT NOT NULL REFERENCES apps(id),
    id              TEXT NOT NULL,
    secret          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    -- The highest seq stored from this instance, and the seq below which history was pruned.
    last_seq        INTEGER NOT NULL DEFAULT 0,
    pruned_seq      INTEGER NOT NULL DEFAULT 0,
    agent_version   TEXT,
    recipe_version  INTEGER,
    last_seen       TEXT,
    round           INTEGER,
    round_result    TEXT,
    PRIMARY KEY (app_id, id)
);

CREATE TABLE recipes (
    app_id      TEXT NOT NULL REFERENCES apps(id),
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (app_id, version)
);

-- The latest report of every state on every instance (the one with the highest seq).
CREATE TABLE state_status (
    app_id          TEXT NOT NULL,
    instance_id     TEXT NOT NULL,
    state_id        TEXT NOT NULL,
    module          TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    recipe_version  INTEGER NOT NULL,
    round           INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    comment         TEXT,
    updated_at      TEXT NOT NULL,
    log             TEXT NOT NULL,
    PRIMARY KEY (app_id, instance_id, state_id)
);

-- Every message with a seq (state logs and round events), once per (app, instance, seq); pruned
-- to the most recent ones per instance.
CREATE TABLE messages (
    app_id       TEXT NOT NULL,
    instance_id  TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    PRIMARY KEY (app_id, instance_id, seq)
);
CREATE INDEX messages_by_kind ON messages (app_id, kind, instance_id, seq);

-- `meta.wait` states released (DONE), per instance and recipe version.
CREATE TABLE released_waits (
    app_id          TEXT NOT NULL,
    instance_id     TEXT NOT NULL,
    recipe_version  INTEGER NOT NULL,
    state_id        TEXT NOT NULL,
    released_at     TEXT NOT NULL,
    PRIMARY KEY (app_id, instance_id, recipe_version, state_id)
);
