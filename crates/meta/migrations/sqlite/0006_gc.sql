-- Garbage collection asks, for each manifest it may delete, whether a tag names it.
-- (PostgreSQL has had this index since 0001; SQLite indexes the referencing side of no
-- foreign key either.)
CREATE INDEX IF NOT EXISTS tags_manifest ON tags(manifest_id);

-- `berth fsck --repair` asks, before removing an unrecorded object, whether a row names it.
CREATE INDEX blobs_storage_key ON blobs(storage_key);
