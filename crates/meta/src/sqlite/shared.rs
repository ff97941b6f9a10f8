//! Upload sessions and the login throttle: the implementations both backends share.

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
