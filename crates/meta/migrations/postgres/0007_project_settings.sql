-- Lifecycle settings of a project (issue 6): its storage quota and the tag patterns that
-- cannot be overwritten or deleted once pushed.
CREATE TABLE project_settings (
    project         TEXT COLLATE "C" PRIMARY KEY REFERENCES projects(name) ON DELETE CASCADE,
    quota_bytes     BIGINT,                     -- NULL: no quota
    immutable_tags  TEXT NOT NULL DEFAULT '',   -- glob patterns, one per line
    updated_at      BIGINT NOT NULL
);
