//! Upload sessions, from the shared implementation.

use super::PostgresMeta;

crate::uploads::impl_upload_sessions!(PostgresMeta, read = pool, write = pool);
