-- Agent self-upgrades: the version each app's agents should run, and the latest upgrade report
-- (`UpgradeStatus`) of every instance.

ALTER TABLE apps ADD COLUMN target_version TEXT;
ALTER TABLE apps ADD COLUMN allow_downgrade INTEGER NOT NULL DEFAULT 0;

ALTER TABLE instances ADD COLUMN upgrade_seq INTEGER;
ALTER TABLE instances ADD COLUMN upgrade_version TEXT;
ALTER TABLE instances ADD COLUMN upgrade_from TEXT;
ALTER TABLE instances ADD COLUMN upgrade_phase TEXT;
ALTER TABLE instances ADD COLUMN upgrade_reason TEXT;
ALTER TABLE instances ADD COLUMN upgrade_at TEXT;
