//! The role traits whose one implementation both backends share (written as macros in the
//! trait modules, instantiated here with this backend's pools): upload sessions, the login
//! throttle, the garbage collector's queries and lifecycle (quotas, immutable tags,
//! retention).

use super::SqliteMeta;

crate::uploads::impl_upload_sessions!(
    SqliteMeta,
    db = sqlx::Sqlite,
    read = read,
    write = write,
    begin = begin_write,
    serialize = ""
);

crate::throttle::impl_login_throttle!(SqliteMeta, read = read, write = write, serialize = "");

crate::gc::impl_collector!(
    SqliteMeta,
    snapshot = begin_snapshot,
    write = begin_write,
    lock_manifest = "",
    lock_link = "",
    lock_blob = "",
);

crate::lifecycle::impl_lifecycle!(
    SqliteMeta,
    read = read,
    write = write,
    begin = begin_write,
    lock_tag_list = ""
);
