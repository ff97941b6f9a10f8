-- The registry's source of truth, as migrations/sqlite/0001_registry.sql, in PostgreSQL types.
-- Names that listings sort and page by are COLLATE "C": byte order, as SQLite compares and as
-- the `last` cursors of /v2/_catalog and /tags/list expect, whatever the database's locale.

CREATE TABLE repositories (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- Every verified blob, once, whatever repositories use it.
CREATE TABLE blobs (
    digest       TEXT COLLATE "C" PRIMARY KEY,
    size         BIGINT NOT NULL,
    storage_key  TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- Which repository may read which blob: pushed or mounted there.
CREATE TABLE repository_blobs (
    repository_id  BIGINT NOT NULL REFERENCES repositories(id),
    digest         TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

CREATE TABLE manifests (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id  BIGINT NOT NULL REFERENCES repositories(id),
    digest         TEXT COLLATE "C" NOT NULL,
    media_type     TEXT NOT NULL,
    content        BYTEA NOT NULL,
    subject        TEXT COLLATE "C",
    artifact_type  TEXT,
    annotations    TEXT,
    created_at     BIGINT NOT NULL,
    UNIQUE (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;

-- What a manifest points at: kind 'blob' (config, layers) or 'manifest' (index children).
CREATE TABLE manifest_references (
    manifest_id  BIGINT NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    digest       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (manifest_id, kind, digest)
);
CREATE INDEX manifest_references_digest ON manifest_references(digest);

CREATE TABLE tags (
    repository_id  BIGINT NOT NULL REFERENCES repositories(id),
    name           TEXT COLLATE "C" NOT NULL,
    manifest_id    BIGINT NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name)
);
-- PostgreSQL does not index the referencing side of a foreign key; deleting a manifest finds
-- its tags through this one.
CREATE INDEX tags_manifest ON tags(manifest_id);

CREATE TABLE uploads (
    id             TEXT COLLATE "C" PRIMARY KEY,
    repository     TEXT NOT NULL,
    "offset"       BIGINT NOT NULL,
    hash_state     BYTEA NOT NULL,
    backend_state  BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
