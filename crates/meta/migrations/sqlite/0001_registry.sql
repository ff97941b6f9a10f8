-- The registry's source of truth. Blob storage holds bytes; this says what exists and who may
-- read it.

CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

-- Every verified blob, once, whatever repositories use it.
CREATE TABLE blobs (
    digest       TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    storage_key  TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

-- Which repository may read which blob: pushed or mounted there.
CREATE TABLE repository_blobs (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id),
    digest         TEXT NOT NULL REFERENCES blobs(digest),
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

CREATE TABLE manifests (
    id             INTEGER PRIMARY KEY,
    repository_id  INTEGER NOT NULL REFERENCES repositories(id),
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    content        BLOB NOT NULL,
    subject        TEXT,
    artifact_type  TEXT,
    annotations    TEXT,
    created_at     INTEGER NOT NULL,
    UNIQUE (repository_id, digest)
);
CREATE INDEX manifests_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;

-- What a manifest points at: kind 'blob' (config, layers) or 'manifest' (index children).
CREATE TABLE manifest_references (
    manifest_id  INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('blob', 'manifest')),
    digest       TEXT NOT NULL,
    PRIMARY KEY (manifest_id, kind, digest)
);
CREATE INDEX manifest_references_digest ON manifest_references(digest);

CREATE TABLE tags (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id),
    name           TEXT NOT NULL,
    manifest_id    INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name)
);

CREATE TABLE uploads (
    id             TEXT PRIMARY KEY,
    repository     TEXT NOT NULL,
    "offset"       INTEGER NOT NULL,
    hash_state     BLOB NOT NULL,
    backend_state  BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
