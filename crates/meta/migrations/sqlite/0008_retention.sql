-- Retention policies (issue 6): a project's rules, as JSON (empty: none), and when each tag was
-- last pulled (Unix seconds, recorded at most about once an hour per tag; NULL: never since
-- this column exists).
ALTER TABLE project_settings ADD COLUMN retention TEXT NOT NULL DEFAULT '';
ALTER TABLE tags ADD COLUMN pulled_at INTEGER;
