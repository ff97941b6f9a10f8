//! [`Inventory`](crate::inventory::Inventory) on PostgreSQL: the shared queries.

use async_trait::async_trait;
use berth_oci::{Digest, Repository, Tag};
use sqlx::Row;

use super::{PostgresMeta, blob_record, manifest_record};
use crate::inventory::page_of;
use crate::rows::parse;
use crate::{BlobRecord, ManifestRecord, Page, Result};

crate::inventory::impl_inventory!(PostgresMeta, pool);
