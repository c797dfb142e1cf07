-- Apps as the original built them: every instance belongs to a component (default: one named
-- like the instance), reports its facts (for links), and gets its own rendered recipe, with its
-- own version stream; operators set attributes on instances and components.

ALTER TABLE instances ADD COLUMN component TEXT;
-- JSON object: attribute name → list of values; NULL until the agent first connects.
ALTER TABLE instances ADD COLUMN facts TEXT;
UPDATE instances SET component = id WHERE component IS NULL;

CREATE TABLE attributes (
    app_id  TEXT NOT NULL,
    scope   TEXT NOT NULL CHECK (scope IN ('instance', 'component')),
    name    TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (app_id, scope, name, key)
);

-- What each instance was sent: its recipe rendered from the app's recipe `source_version`.
CREATE TABLE instance_recipes (
    app_id          TEXT NOT NULL,
    instance_id     TEXT NOT NULL,
    version         INTEGER NOT NULL,
    source_version  INTEGER NOT NULL,
    body            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (app_id, instance_id, version)
);

-- Before this version every instance ran the app's recipe as it was: that is their first
-- rendered version.
INSERT INTO instance_recipes (app_id, instance_id, version, source_version, body, created_at)
SELECT i.app_id, i.id, r.version, r.version, r.body, r.created_at
FROM instances i JOIN recipes r ON r.app_id = i.app_id
WHERE r.version = (SELECT MAX(version) FROM recipes WHERE app_id = i.app_id);

-- The per-app secret of the reload webhook (`POST /api/v1/apps/APP/reload`), NULL: none.
ALTER TABLE apps ADD COLUMN webhook_secret TEXT;
-- Refuse pushes with compatibility warnings (unknown parameters, aliases…).
ALTER TABLE apps ADD COLUMN strict INTEGER NOT NULL DEFAULT 0;
