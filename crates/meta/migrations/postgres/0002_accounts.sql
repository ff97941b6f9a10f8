-- Who may do what: accounts, projects and roles, as migrations/sqlite/0002_accounts.sql. A
-- project is the first component of a repository name; repositories need no row here to belong
-- to one. Names are COLLATE "C" so that listings sort by bytes, as on SQLite.

CREATE TABLE users (
    name           TEXT COLLATE "C" PRIMARY KEY,
    password_hash  TEXT NOT NULL,           -- argon2id, PHC string
    system_admin   BOOLEAN NOT NULL DEFAULT FALSE,
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     BIGINT NOT NULL
);

CREATE TABLE projects (
    name        TEXT COLLATE "C" PRIMARY KEY,
    public      BOOLEAN NOT NULL DEFAULT FALSE,
    -- The account whose personal namespace this is, if it is one.
    owner       TEXT COLLATE "C" REFERENCES users(name) ON DELETE SET NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX projects_owner ON projects(owner) WHERE owner IS NOT NULL;

CREATE TABLE memberships (
    project     TEXT COLLATE "C" NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    username    TEXT COLLATE "C" NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    role        TEXT NOT NULL CHECK (role IN ('guest', 'developer', 'maintainer', 'admin')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (project, username)
);
CREATE INDEX memberships_user ON memberships(username);

CREATE TABLE robots (
    name         TEXT COLLATE "C" PRIMARY KEY,
    secret_hash  TEXT NOT NULL,
    expires_at   BIGINT,
    disabled     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL
);

-- What a robot may do, per project: a comma-separated subset of pull,push,delete.
CREATE TABLE robot_permissions (
    robot    TEXT COLLATE "C" NOT NULL REFERENCES robots(name) ON DELETE CASCADE,
    project  TEXT COLLATE "C" NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    actions  TEXT NOT NULL,
    PRIMARY KEY (robot, project)
);
CREATE INDEX robot_permissions_project ON robot_permissions(project);

-- The token signing key, created once and shared by every replica (PKCS#8).
CREATE TABLE signing_keys (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    pkcs8       BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
