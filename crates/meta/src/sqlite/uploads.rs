//! Upload sessions, from the shared implementation.

use super::SqliteMeta;

crate::uploads::impl_upload_sessions!(SqliteMeta, read = read, write = write);
