-- The audit log, as migrations/sqlite/0003_audit.sql: every push, delete, failed login and
-- permission change, with who did it, when, and from where. Append-only; read newest first.
-- Ids come from a sequence: they increase in the order events are recorded and are never
-- reused, though a rolled-back insert leaves a gap.

CREATE TABLE audit_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,           -- Unix seconds
    actor     TEXT NOT NULL,             -- account, `robot$name`, or `anonymous`
    source    TEXT,                      -- client address, when known
    action    TEXT COLLATE "C" NOT NULL, -- e.g. `push`, `delete.tag`, `login.failed`, `member.set`
    project   TEXT,                      -- the project concerned, if any
    resource  TEXT NOT NULL,             -- e.g. `team/app:1.0@sha256:…`, `user bob`
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_project ON audit_events(project, id);
CREATE INDEX audit_events_actor ON audit_events(actor, id);
