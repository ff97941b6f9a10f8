//! Turning stored values back into records, and database errors into [`MetaError`]s: the part
//! of reading rows that does not depend on the backend.

use std::str::FromStr;

use crate::{MetaError, Page, Result, Role};

/// A stored name or digest, parsed; a value berth would not have written is `Corrupt`.
pub(crate) fn parse<T: FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| MetaError::Corrupt(s.chars().take(300).collect()))
}

/// A page of at most `limit` parsed names from a query that fetched `limit + 1`.
pub(crate) fn page<T: FromStr>(names: &[String], limit: u32) -> Result<Page<T>> {
    Ok(Page {
        items: names
            .iter()
            .take(limit as usize)
            .map(|n| parse(n))
            .collect::<Result<_>>()?,
        more: names.len() > limit as usize,
    })
}

pub(crate) fn size(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| MetaError::Corrupt(format!("negative size {v}")))
}

pub(crate) fn role(text: &str) -> Result<Role> {
    text.parse()
        .map_err(|_| MetaError::Corrupt(format!("role {text:?}")))
}

/// A unique-constraint violation means the name is taken.
pub(crate) fn conflict(what: &str, name: &str) -> impl FnOnce(sqlx::Error) -> MetaError {
    let message = format!("{what} {name:?} already exists");
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => MetaError::Conflict(message),
        _ => MetaError::Database(e),
    }
}

/// A foreign-key violation means something named does not exist.
pub(crate) fn missing(message: String) -> impl FnOnce(sqlx::Error) -> MetaError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => MetaError::NotFound(message),
        _ => MetaError::Database(e),
    }
}

/// After a manifest PUT's tag upsert returned the tags it `written`: a tag of the manifest it
/// did not write is an immutable one that names another manifest, and the PUT is refused.
pub(crate) fn all_tags_written(m: &crate::NewManifest, written: &[String]) -> Result<()> {
    match m
        .tags
        .iter()
        .find(|t| !written.iter().any(|w| w == t.as_str()))
    {
        Some(kept) => Err(MetaError::TagImmutable(kept.clone())),
        None => Ok(()),
    }
}
