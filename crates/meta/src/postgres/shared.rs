//! Upload sessions and the login throttle: the implementations both backends share.

use super::PostgresMeta;

crate::uploads::impl_upload_sessions!(PostgresMeta, read = pool, write = pool);

crate::throttle::impl_login_throttle!(
    PostgresMeta,
    read = pool,
    write = pool,
    serialize = "SELECT pg_advisory_xact_lock(1650553460, hashtext($1))"
);
