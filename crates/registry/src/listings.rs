//! Content discovery: tags, referrers, catalog.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_meta::Page;
use berth_oci::{Digest, Repository, Tag, media_type};
use serde_json::{Map, Value, json};

use crate::{Error, Registry, Result};

/// The most entries one page of a listing holds, whatever `n` asks for.
pub const MAX_PAGE: u32 = 10_000;

/// One page of a repository's tags: a window on a list that may be shared with other requests.
#[derive(Clone, Debug)]
pub struct TagPage {
    tags: Arc<[Tag]>,
    window: std::ops::Range<usize>,
    /// More tags follow the last one of the page.
    pub more: bool,
}

impl TagPage {
    pub fn items(&self) -> &[Tag] {
        &self.tags[self.window.clone()]
    }

    /// The page of `tags` (in lexical order) after `last`, at most `n`.
    fn of(tags: Arc<[Tag]>, last: Option<&str>, n: u32) -> Self {
        let start = last.map_or(0, |last| tags.partition_point(|t| t.as_str() <= last));
        let end = start.saturating_add(n as usize).min(tags.len());
        Self {
            more: end < tags.len(),
            window: start..end,
            tags,
        }
    }
}

/// Tag lists kept in memory, each with the version the database gave before it was read
/// ([`berth_meta::ManifestIndex::tag_list_version`]): served while the database still gives
/// that version, so a change by any replica is seen by the next request. Only lists of at
/// most one page are kept, [`TAG_LISTS_MAX_TAGS`] tags in all; of a longer one, only that it
/// is longer (`None`), so that its pages are read from the database without reading the
/// first 10,001 tags each time.
#[derive(Default)]
pub(crate) struct TagLists {
    lists: Mutex<TagListsInner>,
}

/// A kept tag list, or `None` for one longer than a page.
type KeptList = Option<Arc<[Tag]>>;

#[derive(Default)]
struct TagListsInner {
    by_repository: HashMap<Repository, (i64, KeptList)>,
    tags: usize,
}

/// Tags held by [`TagLists`] across repositories (a few MiB at most).
const TAG_LISTS_MAX_TAGS: usize = 100_000;

impl TagLists {
    fn get(&self, repository: &Repository, version: i64) -> Option<KeptList> {
        let lists = self.lists.lock().ok()?;
        match lists.by_repository.get(repository) {
            Some((v, tags)) if *v == version => Some(tags.clone()),
            _ => None,
        }
    }

    fn put(&self, repository: &Repository, version: i64, tags: KeptList) {
        let len = |tags: &KeptList| tags.as_ref().map_or(0, |t| t.len());
        let Ok(mut lists) = self.lists.lock() else {
            return;
        };
        let lists = &mut *lists;
        if let Some((_, old)) = lists.by_repository.remove(repository) {
            lists.tags -= len(&old);
        }
        // Room for the new list: drop others, in no particular order.
        while lists.tags + len(&tags) > TAG_LISTS_MAX_TAGS {
            let Some(other) = lists.by_repository.keys().next().cloned() else {
                break;
            };
            if let Some((_, old)) = lists.by_repository.remove(&other) {
                lists.tags -= len(&old);
            }
        }
        lists.tags += len(&tags);
        lists
            .by_repository
            .insert(repository.clone(), (version, tags));
    }
}

impl Registry {
    /// Tags in lexical order after `last`, at most `n` (distribution-spec "Listing Tags").
    ///
    /// One query for the list's version; the list itself comes from memory while the version
    /// is the one it was read with (see [`TagLists`]).
    pub async fn list_tags(
        &self,
        repository: &Repository,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<TagPage> {
        let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let unknown = || Error::NameUnknown(repository.clone());
        let version = self
            .meta
            .tag_list_version(repository)
            .await?
            .ok_or_else(unknown)?;
        match self.tag_lists.get(repository, version) {
            Some(Some(tags)) => return Ok(TagPage::of(tags, last, n)),
            // Longer than a page at this version.
            Some(None) => {}
            None => {
                // Read after the version: if the list changed in between, the version has
                // changed too, and the next request reads the list again.
                let whole = self
                    .meta
                    .tags(repository, None, MAX_PAGE)
                    .await?
                    .ok_or_else(unknown)?;
                if !whole.more {
                    let tags: Arc<[Tag]> = whole.items.into();
                    self.tag_lists.put(repository, version, Some(tags.clone()));
                    return Ok(TagPage::of(tags, last, n));
                }
                self.tag_lists.put(repository, version, None);
            }
        }
        // Longer than a page: read the page asked for.
        let page = self
            .meta
            .tags(repository, last, n)
            .await?
            .ok_or_else(unknown)?;
        let tags: Arc<[Tag]> = page.items.into();
        Ok(TagPage {
            window: 0..tags.len(),
            tags,
            more: page.more,
        })
    }

    /// Repositories in lexical order after `last`, at most `n`.
    pub async fn catalog(&self, n: Option<u32>, last: Option<&str>) -> Result<Page<Repository>> {
        Ok(self
            .meta
            .repositories(last, n.unwrap_or(MAX_PAGE).min(MAX_PAGE))
            .await?)
    }

    /// The referrers of `digest` as an OCI image index (distribution-spec "Listing
    /// Referrers"): an empty index when there are none, also for an unknown digest.
    pub async fn referrers(
        &self,
        repository: &Repository,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<u8>> {
        let referrers = self
            .meta
            .referrers(repository, digest, artifact_type)
            .await?;
        let manifests: Vec<Value> = referrers
            .into_iter()
            .map(|r| {
                let mut d = Map::new();
                d.insert("mediaType".into(), r.media_type.into());
                d.insert("digest".into(), r.digest.to_string().into());
                d.insert("size".into(), r.size.into());
                if let Some(at) = r.artifact_type {
                    d.insert("artifactType".into(), at.into());
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                {
                    d.insert("annotations".into(), a);
                }
                Value::Object(d)
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": manifests,
        });
        serde_json::to_vec(&index).map_err(|e| Error::ManifestInvalid(e.to_string()))
    }
}
