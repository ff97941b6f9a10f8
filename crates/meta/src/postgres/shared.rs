//! The role traits whose one implementation both backends share (written as macros in the
//! trait modules, instantiated here with this backend's pools): upload sessions, the login
//! throttle, the garbage collector's queries and lifecycle (quotas, immutable tags,
//! retention).

use super::PostgresMeta;

crate::uploads::impl_upload_sessions!(
    PostgresMeta,
    db = sqlx::Postgres,
    read = pool,
    write = pool,
    begin = begin,
    serialize = "SELECT pg_advisory_xact_lock(1970302052, hashtext($1))"
);

crate::throttle::impl_login_throttle!(
    PostgresMeta,
    read = pool,
    write = pool,
    serialize = "SELECT pg_advisory_xact_lock(1650553460, hashtext($1))"
);

crate::gc::impl_collector!(
    PostgresMeta,
    snapshot = begin_snapshot,
    write = begin,
    lock_manifest = "SELECT 1 FROM manifests WHERE id = $1 FOR UPDATE SKIP LOCKED",
    lock_link = "SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2
                 FOR UPDATE SKIP LOCKED",
    lock_blob = "SELECT 1 FROM blobs WHERE digest = $1 FOR UPDATE SKIP LOCKED",
);

crate::lifecycle::impl_lifecycle!(
    PostgresMeta,
    read = pool,
    write = pool,
    begin = begin,
    lock_tag_list = "SELECT 1 FROM repositories WHERE name = $1 FOR NO KEY UPDATE"
);
