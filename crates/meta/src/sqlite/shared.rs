//! Upload sessions and the login throttle: the implementations both backends share.

use super::SqliteMeta;

crate::uploads::impl_upload_sessions!(SqliteMeta, read = read, write = write);

crate::throttle::impl_login_throttle!(SqliteMeta, read = read, write = write, serialize = "");
