-- The audit log (issue 4): every push, delete, failed login and permission change, with who did
-- it, when, and from where. Append-only; read newest first.

CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,          -- Unix seconds
    actor     TEXT NOT NULL,             -- account, `robot$name`, or `anonymous`
    source    TEXT,                      -- client address, when known
    action    TEXT NOT NULL,             -- e.g. `push`, `delete.tag`, `login.failed`, `member.set`
    project   TEXT,                      -- the project concerned, if any
    resource  TEXT NOT NULL,             -- e.g. `team/app:1.0@sha256:…`, `user bob`
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_project ON audit_events(project, id);
CREATE INDEX audit_events_actor ON audit_events(actor, id);
