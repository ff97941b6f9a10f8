-- Who may do what: accounts, projects and roles (issue 4). A project is the first component of
-- a repository name; repositories need no row here to belong to one.

CREATE TABLE users (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,           -- argon2id, PHC string
    system_admin   INTEGER NOT NULL DEFAULT 0,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);

CREATE TABLE projects (
    name        TEXT PRIMARY KEY,
    public      INTEGER NOT NULL DEFAULT 0,
    -- The account whose personal namespace this is, if it is one.
    owner       TEXT REFERENCES users(name) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE memberships (
    project     TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    username    TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('guest', 'developer', 'maintainer', 'admin')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (project, username)
);
CREATE INDEX memberships_user ON memberships(username);

CREATE TABLE robots (
    name         TEXT PRIMARY KEY,
    secret_hash  TEXT NOT NULL,
    expires_at   INTEGER,
    disabled     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);

-- What a robot may do, per project: a comma-separated subset of pull,push,delete.
CREATE TABLE robot_permissions (
    robot    TEXT NOT NULL REFERENCES robots(name) ON DELETE CASCADE,
    project  TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    actions  TEXT NOT NULL,
    PRIMARY KEY (robot, project)
);

-- The token signing key, created once and shared by every replica (PKCS#8).
CREATE TABLE signing_keys (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    pkcs8       BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
