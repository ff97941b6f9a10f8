//! The behaviour every [`MetaStore`] backend must have. Backends call [`suite_tests!`] from
//! their tests: one test per case, each on a fresh store.

use berth_oci::{Digest, Repository, Tag};

use crate::{
    AuditEvent, AuditQuery, AuditRecord, BlobRecord, Clock, MetaError, MetaStore, NewManifest,
    ProjectRecord, RobotPermission, RobotRecord, Role, UploadRecord, UserRecord,
};

fn repo(s: &str) -> Repository {
    s.parse().expect("repository")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

fn blob(data: &[u8]) -> BlobRecord {
    let digest = Digest::sha256_of(data);
    BlobRecord {
        storage_key: format!("blobs/sha256/{}/{}", &digest.hex()[..2], digest.hex()),
        digest,
        size: data.len() as u64,
    }
}

fn manifest(content: &[u8], blobs: &[&BlobRecord], tags: &[&str]) -> NewManifest {
    NewManifest {
        digest: Digest::sha256_of(content),
        media_type: berth_oci::media_type::OCI_MANIFEST.to_string(),
        content: content.to_vec(),
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs: blobs.iter().map(|b| b.digest.clone()).collect(),
        manifests: Vec::new(),
        tags: tags.iter().map(|t| tag(t)).collect(),
        immutable_tags: Vec::new(),
        audit: None,
    }
}

/// One `#[tokio::test]` per case of the suite, each on a fresh, empty store: a backend's tests
/// call `berth_meta::suite_tests!(open)`, where `open()` is an async function returning a
/// [`Fresh`] store (a new database, and whatever must live as long as it). A failing case
/// fails alone, and `cargo nextest run <case>` runs one.
#[macro_export]
macro_rules! suite_tests {
    ($open:path) => {
        $crate::suite_tests!(@cases $open; blobs_are_per_repository, manifests_tags_and_deletes, referrers, listings_page, tag_list_version, upload_sessions, upload_owners, job_locks, login_throttle, accounts, token_stamps, audit_log, audit_batches, inventory, collector, lifecycle);
        $crate::suite_tests!(@timed $open; pushed_again_is_young_again);
    };
    (@cases $open:path; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fresh = $open().await;
                let meta = $crate::testsuite::Fresh::meta(&fresh);
                $crate::testsuite::check(meta).await;
                $crate::testsuite::$case(meta).await;
                $crate::testsuite::Fresh::finish(fresh).await;
            }
        )+
    };
    // Cases that move the store's clock.
    (@timed $open:path; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fresh = $open().await;
                let meta = $crate::testsuite::Fresh::meta(&fresh);
                $crate::testsuite::check(meta).await;
                $crate::testsuite::$case(meta, $crate::testsuite::Fresh::clock(&fresh)).await;
                $crate::testsuite::Fresh::finish(fresh).await;
            }
        )+
    };
}

/// A fresh, empty store for one case of the suite, with what it lives on.
pub trait Fresh {
    /// The store, dating rows by [`Fresh::clock`].
    fn meta(&self) -> &dyn MetaStore;
    fn clock(&self) -> &crate::ManualClock;
    /// Cleans up after a case that passed (drops a test database, say).
    fn finish(self) -> impl std::future::Future<Output = ()>;
}

/// Every backend answers its health check before a case runs.
pub async fn check(meta: &dyn MetaStore) {
    meta.check().await.expect("check");
}

pub async fn blobs_are_per_repository(meta: &dyn MetaStore) {
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let x = blob(b"blob x");
    let added = meta.add_blob(&a, &x).await.expect("add");
    assert_eq!(added, x);
    assert_eq!(
        meta.repository_blob(&a, &x.digest).await.expect("get"),
        Some(x.clone())
    );
    assert_eq!(
        meta.repository_blob(&b, &x.digest).await.expect("get"),
        None
    );
    assert_eq!(meta.blob(&x.digest).await.expect("get"), Some(x.clone()));
    assert_eq!(
        meta.blob_by_storage_key(&x.storage_key)
            .await
            .expect("by key"),
        Some(x.clone())
    );
    assert_eq!(
        meta.blob_by_storage_key("blobs/none")
            .await
            .expect("by key"),
        None
    );
    // A second add of the same digest keeps the first record.
    let mut other_key = x.clone();
    other_key.storage_key = "blobs/other".into();
    assert_eq!(meta.add_blob(&b, &other_key).await.expect("add"), x);
    assert!(meta.unlink_blob(&b, &x.digest).await.expect("unlink"));
    assert!(!meta.unlink_blob(&b, &x.digest).await.expect("unlink twice"));
    assert!(meta.link_blob(&b, &x.digest).await.expect("link"));
    assert_eq!(
        meta.blob_repositories(&x.digest, 10).await.expect("list"),
        vec![a.clone(), b.clone()]
    );
    assert!(
        !meta
            .link_blob(&b, &Digest::sha256_of(b"nope"))
            .await
            .expect("link unknown")
    );
}

pub async fn manifests_tags_and_deletes(meta: &dyn MetaStore) {
    let r = repo("suite/manifests");
    let layer = blob(b"layer");
    let m = manifest(b"{\"m\":1}", &[&layer], &["v1", "latest"]);
    assert!(matches!(
        meta.put_manifest(&r, &m).await,
        Err(MetaError::BlobUnknown(d)) if d == layer.digest
    ));
    assert_eq!(meta.manifest(&r, &m.digest).await.expect("get"), None);
    meta.add_blob(&r, &layer).await.expect("add");
    meta.put_manifest(&r, &m).await.expect("put");
    meta.put_manifest(&r, &m)
        .await
        .expect("put again is idempotent");
    let got = meta
        .tagged_manifest(&r, &tag("v1"))
        .await
        .expect("get")
        .expect("tagged");
    assert_eq!(got.content, m.content);
    assert_eq!(got.digest, m.digest);

    let mut index = manifest(b"{\"index\":1}", &[], &["multi"]);
    index.manifests = vec![Digest::sha256_of(b"missing child")];
    assert!(matches!(
        meta.put_manifest(&r, &index).await,
        Err(MetaError::ManifestUnknown(_))
    ));
    index.manifests = vec![m.digest.clone()];
    meta.put_manifest(&r, &index).await.expect("index");

    // Moving a tag.
    let m2 = manifest(b"{\"m\":2}", &[&layer], &["latest"]);
    meta.put_manifest(&r, &m2).await.expect("put");
    assert_eq!(
        meta.tagged_manifest(&r, &tag("latest"))
            .await
            .expect("get")
            .map(|m| m.digest),
        Some(m2.digest.clone())
    );
    assert!(meta.delete_tag(&r, &tag("v1")).await.expect("delete tag"));
    assert!(
        !meta
            .delete_tag(&r, &tag("v1"))
            .await
            .expect("delete tag twice")
    );
    assert!(meta.manifest(&r, &m.digest).await.expect("get").is_some());
    assert!(meta.delete_manifest(&r, &m2.digest).await.expect("delete"));
    assert!(
        !meta
            .delete_manifest(&r, &m2.digest)
            .await
            .expect("delete twice")
    );
    assert_eq!(
        meta.tagged_manifest(&r, &tag("latest")).await.expect("get"),
        None
    );
    let tags = meta.tags(&r, None, 100).await.expect("tags").expect("repo");
    assert_eq!(tags.items, vec![tag("multi")]);
    assert_eq!(
        meta.tags(&repo("suite/none"), None, 10)
            .await
            .expect("tags"),
        None
    );
}

/// The tag list's version changes with every tag added or removed, in whatever way (PUT,
/// DELETE of the tag, DELETE of its manifest, retention), and with nothing else: moving a
/// tag, repeating a PUT, recording a pull, an untagged manifest.
pub async fn tag_list_version(meta: &dyn MetaStore) {
    let r = repo("suite/taglist");
    assert_eq!(meta.tag_list_version(&r).await.expect("version"), None);
    let layer = blob(b"tag list layer");
    meta.add_blob(&r, &layer).await.expect("add");
    let version = || async { meta.tag_list_version(&r).await.expect("version") };
    let start = version().await.expect("the repository exists");

    let m1 = manifest(b"{\"taglist\":1}", &[&layer], &["a", "b"]);
    meta.put_manifest(&r, &m1).await.expect("put");
    let added = version().await.expect("version");
    assert!(added > start, "adding tags changes the version");

    let mut unchanged = Vec::new();
    meta.put_manifest(&r, &m1).await.expect("put again");
    unchanged.push(("the same PUT again", version().await));
    let m2 = manifest(b"{\"taglist\":2}", &[&layer], &["a"]);
    meta.put_manifest(&r, &m2).await.expect("move a");
    unchanged.push(("moving a tag", version().await));
    let m3 = manifest(b"{\"taglist\":3}", &[&layer], &[]);
    meta.put_manifest(&r, &m3).await.expect("untagged");
    unchanged.push(("an untagged manifest", version().await));
    meta.record_pull(&r, &tag("a"), 1_000, 0)
        .await
        .expect("pull");
    unchanged.push(("a pull", version().await));
    for (what, v) in unchanged {
        assert_eq!(v, Some(added), "{what} leaves the version");
    }

    let mut last = added;
    let mut changed = |what: &str, v: Option<i64>| {
        let v = v.expect("version");
        assert!(v > last, "{what} changes the version");
        last = v;
    };
    let m4 = manifest(b"{\"taglist\":4}", &[&layer], &["c"]);
    meta.put_manifest(&r, &m4).await.expect("put c");
    changed("a new tag", version().await);
    assert!(meta.delete_tag(&r, &tag("c")).await.expect("delete c"));
    changed("deleting a tag", version().await);
    assert!(
        meta.delete_manifest(&r, &m2.digest)
            .await
            .expect("delete m2")
    );
    changed("deleting a tagged manifest", version().await);
    assert!(
        meta.delete_tag_naming(&r, &tag("b"), &m1.digest)
            .await
            .expect("retention delete")
    );
    changed("a retention delete", version().await);
    assert!(
        !meta
            .delete_tag(&r, &tag("b"))
            .await
            .expect("delete b again")
    );
    assert_eq!(version().await, Some(last), "deleting nothing leaves it");
}

pub async fn referrers(meta: &dyn MetaStore) {
    let r = repo("suite/referrers");
    let cfg = blob(b"{}");
    meta.add_blob(&r, &cfg).await.expect("add");
    let subject = Digest::sha256_of(b"subject, maybe not pushed yet");
    for (i, at) in [
        "application/vnd.a",
        "application/vnd.b",
        "application/vnd.a",
    ]
    .iter()
    .enumerate()
    {
        let mut m = manifest(format!("{{\"ref\":{i}}}").as_bytes(), &[&cfg], &[]);
        m.subject = Some(subject.clone());
        m.artifact_type = Some(at.to_string());
        m.annotations = Some(format!("{{\"n\":\"{i}\"}}"));
        meta.put_manifest(&r, &m).await.expect("put");
    }
    let all = meta.referrers(&r, &subject, None).await.expect("referrers");
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].annotations.as_deref(), Some("{\"n\":\"0\"}"));
    assert_eq!(all[0].size, 9);
    let a = meta
        .referrers(&r, &subject, Some("application/vnd.a"))
        .await
        .expect("referrers");
    assert_eq!(a.len(), 2);
    assert!(
        meta.referrers(&repo("suite/other"), &subject, None)
            .await
            .expect("r")
            .is_empty()
    );
}

pub async fn listings_page(meta: &dyn MetaStore) {
    let r = repo("suite/paging");
    let cfg = blob(b"paging");
    meta.add_blob(&r, &cfg).await.expect("add");
    let names = ["b", "a", "c", "A", "_z", "a1"];
    let m = manifest(b"{\"paging\":1}", &[&cfg], &names);
    meta.put_manifest(&r, &m).await.expect("put");
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = meta
            .tags(&r, last.as_deref(), 2)
            .await
            .expect("tags")
            .expect("repo");
        seen.extend(page.items.iter().map(|t| t.to_string()));
        last = page.items.last().map(|t| t.to_string());
        if !page.more {
            break;
        }
    }
    let mut sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sorted.sort();
    assert_eq!(seen, sorted);

    // The catalog pages too: a second repository, so that one page of one is not all.
    let other = repo("suite/paging-other");
    meta.add_blob(&other, &cfg).await.expect("add");
    let m = manifest(b"{\"paging\":2}", &[&cfg], &["v1"]);
    meta.put_manifest(&other, &m).await.expect("put");
    let first = meta.repositories(None, 1).await.expect("catalog");
    assert_eq!(first.items.len(), 1);
    assert!(first.more);
    let rest = meta
        .repositories(Some(first.items[0].as_str()), 1000)
        .await
        .expect("catalog");
    assert!(!rest.more);
    assert!(rest.items.iter().all(|n| n > &first.items[0]));
    let all: Vec<Repository> = first.items.into_iter().chain(rest.items).collect();
    assert_eq!(all, [r.clone(), other]);
    assert!(meta.repository_exists(&r).await.expect("exists"));
}

pub async fn upload_sessions(meta: &dyn MetaStore) {
    let u = UploadRecord {
        id: "01SUITEUPLOAD".into(),
        repository: repo("suite/uploads"),
        offset: 0,
        hash_state: vec![1, 2, 3],
        backend_state: vec![],
        created_at: 1,
        updated_at: 1,
        owner: None,
    };
    let before = meta.count_uploads().await.expect("count");
    meta.create_upload(&u).await.expect("create");
    assert_eq!(meta.count_uploads().await.expect("count"), before + 1);
    assert_eq!(meta.upload(&u.id).await.expect("get"), Some(u.clone()));
    assert!(
        meta.advance_upload(&u.id, 0, 10, &[4], &[5])
            .await
            .expect("advance")
    );
    // A stale writer that still thinks the offset is 0 loses.
    assert!(
        !meta
            .advance_upload(&u.id, 0, 20, &[6], &[7])
            .await
            .expect("advance")
    );
    let got = meta.upload(&u.id).await.expect("get").expect("exists");
    assert_eq!(
        (got.offset, got.hash_state, got.backend_state),
        (10, vec![4], vec![5])
    );
    assert!(meta.delete_upload(&u.id).await.expect("delete"));
    assert!(!meta.delete_upload(&u.id).await.expect("delete twice"));
    assert_eq!(meta.upload(&u.id).await.expect("get"), None);

    // Expiry: idle sessions oldest first; a session advanced since it was listed stays.
    let now = meta.clock().now();
    let session = |id: &str, updated_at: i64| UploadRecord {
        id: id.into(),
        created_at: updated_at,
        updated_at,
        ..u.clone()
    };
    for (id, at) in [("01IDLEB", 100), ("01IDLEA", 50), ("01FRESH", now)] {
        meta.create_upload(&session(id, at)).await.expect("create");
    }
    let idle = meta.idle_uploads(now - 60, 10).await.expect("idle");
    let ids: Vec<&str> = idle.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["01IDLEA", "01IDLEB"]);
    assert_eq!(idle[0], session("01IDLEA", 50));
    assert_eq!(meta.idle_uploads(now - 60, 1).await.expect("idle").len(), 1);
    assert!(
        meta.advance_upload("01IDLEB", 0, 5, &[1], &[2])
            .await
            .expect("advance")
    );
    assert!(
        !meta
            .delete_idle_upload("01IDLEB", 100)
            .await
            .expect("stale")
    );
    assert!(meta.delete_idle_upload("01IDLEA", 50).await.expect("idle"));
    assert_eq!(meta.upload("01IDLEA").await.expect("get"), None);
    assert!(meta.upload("01IDLEB").await.expect("get").is_some());
    for id in ["01IDLEB", "01FRESH"] {
        assert!(meta.delete_upload(id).await.expect("delete"));
    }
}

pub async fn job_locks(meta: &dyn MetaStore) {
    use crate::Job;
    let held = meta
        .try_lock_job(Job::UploadExpiry)
        .await
        .expect("lock")
        .expect("free at first");
    assert_eq!(held.job(), Job::UploadExpiry);
    assert!(
        meta.try_lock_job(Job::UploadExpiry)
            .await
            .expect("lock")
            .is_none(),
        "a second holder"
    );
    // Jobs lock independently.
    let gc = meta
        .try_lock_job(Job::GarbageCollection)
        .await
        .expect("lock")
        .expect("another job is free");
    held.release().await;
    let again = meta
        .try_lock_job(Job::UploadExpiry)
        .await
        .expect("lock")
        .expect("free after release");
    // Dropped without release (a job that panicked): the lock goes too, at once on SQLite, as
    // soon as the server sees the closed session on PostgreSQL.
    drop(again);
    let mut relocked = None;
    for _ in 0..100 {
        relocked = meta.try_lock_job(Job::UploadExpiry).await.expect("lock");
        if relocked.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    relocked.expect("free after drop").release().await;
    gc.release().await;
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: format!("id-of-{name}"),
        name: name.to_string(),
        password_hash: format!("$argon2id$not-a-real-hash-of-{name}"),
        system_admin: false,
        disabled: false,
        created_at: 1,
        token_stamp: 0,
    }
}

/// An account's token stamp goes up with every change that must stop its tokens, and only
/// then; a name created again is another id.
pub async fn token_stamps(meta: &dyn MetaStore) {
    let stamp = |name: &'static str| async move {
        meta.user(name)
            .await
            .expect("user")
            .map(|u| (u.id, u.token_stamp))
    };
    let robot_stamp = |name: &'static str| async move {
        meta.robot(name)
            .await
            .expect("robot")
            .map(|r| (r.id, r.token_stamp))
    };
    meta.create_user(
        &user("stamped"),
        Some(&project("stamped", false, Some("stamped"))),
    )
    .await
    .expect("user");
    meta.create_project(&project("stamps", false, None), None)
        .await
        .expect("project");
    let id = "id-of-stamped".to_string();
    assert_eq!(stamp("stamped").await, Some((id.clone(), 0)));

    assert!(
        meta.set_password("stamped", "$argon2id$new")
            .await
            .expect("password")
    );
    assert_eq!(
        stamp("stamped").await,
        Some((id.clone(), 1)),
        "password change"
    );
    assert!(
        meta.set_user_disabled("stamped", true)
            .await
            .expect("disable")
    );
    assert!(
        meta.set_user_disabled("stamped", false)
            .await
            .expect("enable")
    );
    assert_eq!(
        stamp("stamped").await,
        Some((id.clone(), 3)),
        "disable, enable"
    );

    // A role given or raised leaves the tokens; lowered or taken away, they stop.
    meta.set_member("stamps", "stamped", Role::Developer)
        .await
        .expect("add");
    meta.set_member("stamps", "stamped", Role::Admin)
        .await
        .expect("raise");
    assert_eq!(
        stamp("stamped").await,
        Some((id.clone(), 3)),
        "added and raised"
    );
    meta.set_member("stamps", "stamped", Role::Guest)
        .await
        .expect("lower");
    assert_eq!(stamp("stamped").await, Some((id.clone(), 4)), "lowered");
    assert!(
        meta.remove_member("stamps", "stamped")
            .await
            .expect("remove")
    );
    assert_eq!(stamp("stamped").await, Some((id.clone(), 5)), "removed");
    assert!(
        !meta
            .remove_member("stamps", "stamped")
            .await
            .expect("again")
    );
    assert_eq!(
        stamp("stamped").await,
        Some((id.clone(), 5)),
        "nothing removed"
    );

    // A deleted project stops the tokens of its members and robots; others keep theirs.
    meta.set_member("stamps", "stamped", Role::Developer)
        .await
        .expect("add");
    meta.create_user(&user("outsider"), None)
        .await
        .expect("user");
    let robot = RobotRecord {
        id: "id-of-robot-stamps".into(),
        name: "stamps-ci".into(),
        secret_hash: "$argon2id$robot".into(),
        permissions: vec![RobotPermission {
            project: "stamps".into(),
            actions: vec!["pull".into()],
        }],
        expires_at: None,
        disabled: false,
        created_at: 1,
        token_stamp: 0,
    };
    meta.create_robot(&robot).await.expect("robot");
    assert!(meta.delete_project("stamps").await.expect("delete"));
    assert_eq!(
        stamp("stamped").await,
        Some((id.clone(), 6)),
        "project deleted"
    );
    assert_eq!(
        robot_stamp("stamps-ci").await,
        Some(("id-of-robot-stamps".into(), 1))
    );
    assert_eq!(stamp("outsider").await, Some(("id-of-outsider".into(), 0)));
    assert!(
        meta.set_robot_disabled("stamps-ci", true)
            .await
            .expect("disable")
    );
    assert_eq!(
        robot_stamp("stamps-ci").await,
        Some(("id-of-robot-stamps".into(), 2))
    );

    // The same name again is another account: another id.
    assert!(meta.delete_user("stamped").await.expect("delete"));
    let again = UserRecord {
        id: "id-of-stamped-again".into(),
        ..user("stamped")
    };
    meta.create_user(&again, None).await.expect("again");
    assert_eq!(
        stamp("stamped").await,
        Some(("id-of-stamped-again".into(), 0))
    );
    // Ids are unique.
    let twin = UserRecord {
        name: "twin".into(),
        ..again
    };
    let err = meta.create_user(&twin, None).await.expect_err("same id");
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");

    for name in ["stamped", "outsider"] {
        assert!(meta.delete_user(name).await.expect("clean up"));
    }
    assert!(meta.delete_robot("stamps-ci").await.expect("clean up"));
    assert!(meta.delete_project("stamped").await.expect("clean up"));
}

fn project(name: &str, public: bool, owner: Option<&str>) -> ProjectRecord {
    ProjectRecord {
        name: name.to_string(),
        public,
        owner: owner.map(str::to_string),
        created_at: 1,
    }
}

pub async fn accounts(meta: &dyn MetaStore) {
    assert_eq!(meta.count_users().await.expect("count"), 0);
    // A user with a personal namespace: one transaction, the user its admin.
    meta.create_user(&user("alice"), Some(&project("alice", true, Some("alice"))))
        .await
        .expect("create alice");
    assert_eq!(
        meta.role("alice", "alice").await.expect("role"),
        Some(Role::Admin)
    );
    let err = meta
        .create_user(&user("alice"), None)
        .await
        .expect_err("taken");
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");
    // A taken project name rolls the whole account back.
    meta.create_project(&project("team", false, None), None)
        .await
        .expect("team");
    let err = meta
        .create_user(&user("team"), Some(&project("team", true, Some("team"))))
        .await
        .expect_err("project taken");
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");
    assert!(
        meta.user("team").await.expect("user").is_none(),
        "rolled back"
    );
    meta.create_user(&user("bob"), None).await.expect("bob");
    assert_eq!(meta.count_users().await.expect("count"), 2);
    let names: Vec<String> = meta
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    assert!(
        meta.set_password("bob", "$argon2id$new")
            .await
            .expect("passwd")
    );
    assert_eq!(
        meta.user("bob")
            .await
            .expect("bob")
            .expect("exists")
            .password_hash,
        "$argon2id$new"
    );
    assert!(!meta.set_password("nobody", "x").await.expect("passwd"));
    assert!(meta.set_user_disabled("bob", true).await.expect("disable"));
    assert!(
        meta.user("bob")
            .await
            .expect("bob")
            .expect("exists")
            .disabled
    );

    // Members and roles.
    meta.set_member("team", "bob", Role::Developer)
        .await
        .expect("member");
    meta.set_member("team", "bob", Role::Maintainer)
        .await
        .expect("role change");
    meta.set_member("team", "alice", Role::Guest)
        .await
        .expect("member");
    assert_eq!(
        meta.members("team").await.expect("members"),
        [
            ("alice".to_string(), Role::Guest),
            ("bob".to_string(), Role::Maintainer)
        ]
    );
    let err = meta
        .set_member("nope", "bob", Role::Guest)
        .await
        .expect_err("no project");
    assert!(matches!(err, MetaError::NotFound(_)), "{err}");
    let err = meta
        .set_member("team", "nobody", Role::Guest)
        .await
        .expect_err("no user");
    assert!(matches!(err, MetaError::NotFound(_)), "{err}");
    assert!(meta.remove_member("team", "alice").await.expect("remove"));
    assert!(
        !meta
            .remove_member("team", "alice")
            .await
            .expect("remove again")
    );
    assert_eq!(meta.role("team", "alice").await.expect("role"), None);

    // Projects.
    assert!(
        !meta
            .project("team")
            .await
            .expect("get")
            .expect("exists")
            .public
    );
    assert!(meta.set_project_public("team", true).await.expect("public"));
    assert!(
        meta.project("team")
            .await
            .expect("get")
            .expect("exists")
            .public
    );
    let err = meta
        .create_project(&project("team", false, None), None)
        .await
        .expect_err("taken");
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");
    meta.create_project(&project("ops", false, None), Some("bob"))
        .await
        .expect("ops");
    assert_eq!(
        meta.role("ops", "bob").await.expect("role"),
        Some(Role::Admin)
    );
    let all: Vec<String> = meta
        .projects()
        .await
        .expect("projects")
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(all, ["alice", "ops", "team"]);

    // Robots.
    let robot = RobotRecord {
        id: "id-of-robot-ci".into(),
        name: "ci".into(),
        secret_hash: "$argon2id$robot".into(),
        permissions: vec![
            RobotPermission {
                project: "ops".into(),
                actions: vec!["pull".into()],
            },
            RobotPermission {
                project: "team".into(),
                actions: vec!["pull".into(), "push".into()],
            },
        ],
        expires_at: Some(2_000_000_000),
        disabled: false,
        created_at: 1,
        token_stamp: 0,
    };
    meta.create_robot(&robot).await.expect("robot");
    assert_eq!(meta.robot("ci").await.expect("robot"), Some(robot.clone()));
    let err = meta.create_robot(&robot).await.expect_err("taken");
    assert!(matches!(err, MetaError::Conflict(_)), "{err}");
    let stray = RobotRecord {
        id: "id-of-robot-stray".into(),
        name: "stray".into(),
        permissions: vec![RobotPermission {
            project: "nope".into(),
            actions: vec!["pull".into()],
        }],
        ..robot.clone()
    };
    let err = meta.create_robot(&stray).await.expect_err("no project");
    assert!(matches!(err, MetaError::NotFound(_)), "{err}");
    assert!(
        meta.robot("stray").await.expect("robot").is_none(),
        "rolled back"
    );
    assert!(meta.set_robot_disabled("ci", true).await.expect("disable"));
    assert!(
        meta.robot("ci")
            .await
            .expect("robot")
            .expect("exists")
            .disabled
    );
    assert_eq!(meta.robots().await.expect("robots").len(), 1);

    // Deleting a project drops its memberships and robot permissions.
    assert!(meta.delete_project("ops").await.expect("delete"));
    assert_eq!(meta.role("ops", "bob").await.expect("role"), None);
    let ci = meta.robot("ci").await.expect("robot").expect("exists");
    assert_eq!(ci.permissions.len(), 1);
    assert!(meta.delete_robot("ci").await.expect("delete robot"));
    // Deleting a user keeps its personal project, ownerless.
    assert!(meta.delete_user("alice").await.expect("delete"));
    let personal = meta.project("alice").await.expect("get").expect("kept");
    assert_eq!(personal.owner, None);
    assert_eq!(meta.members("alice").await.expect("members"), []);

    // One signing key, whoever asks first.
    let first = meta.signing_key(b"key-one").await.expect("key");
    assert_eq!(first, b"key-one");
    assert_eq!(meta.signing_key(b"key-two").await.expect("key"), b"key-one");
}

pub async fn audit_log(meta: &dyn MetaStore) {
    let event = |at: i64, actor: &str, action: &str, project: Option<&str>| AuditEvent {
        at,
        actor: actor.into(),
        source: Some("127.0.0.1".into()),
        action: action.into(),
        project: project.map(str::to_string),
        resource: format!("{}/app:1", project.unwrap_or("-")),
        detail: String::new(),
    };
    let all = |limit| AuditQuery {
        limit,
        ..AuditQuery::default()
    };
    assert_eq!(meta.events(&all(10)).await.expect("events"), []);
    let mut ids = Vec::new();
    for e in [
        event(100, "alice", "push", Some("team")),
        event(101, "bob", "delete.tag", Some("team")),
        event(102, "anonymous", "login.failed", None),
        event(103, "alice", "delete.manifest", Some("ops")),
        event(104, "alice", "delete_manifest", Some("ops")),
    ] {
        ids.push(meta.record_event(&e).await.expect("record"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    // Newest first, stored as given.
    let newest = meta.events(&all(2)).await.expect("events");
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].id, ids[4]);
    assert_eq!(
        newest[1].event,
        event(103, "alice", "delete.manifest", Some("ops"))
    );
    // The next page starts below the last id seen.
    let next = meta
        .events(&AuditQuery {
            before: Some(newest[1].id),
            ..all(10)
        })
        .await
        .expect("page");
    assert_eq!(
        next.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[2], ids[1], ids[0]]
    );

    let actions = |records: Vec<AuditRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.event.action).collect()
    };
    let by = |q: AuditQuery| async move { actions(meta.events(&q).await.expect("query")) };
    assert_eq!(
        by(AuditQuery {
            actor: Some("alice".into()),
            ..all(10)
        })
        .await,
        ["delete_manifest", "delete.manifest", "push"]
    );
    // A trailing dot is a prefix, matched literally (`_` is no wildcard).
    assert_eq!(
        by(AuditQuery {
            action: Some("delete.".into()),
            ..all(10)
        })
        .await,
        ["delete.manifest", "delete.tag"]
    );
    assert_eq!(
        by(AuditQuery {
            action: Some("delete".into()),
            ..all(10)
        })
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        by(AuditQuery {
            project: Some("team".into()),
            ..all(10)
        })
        .await,
        ["delete.tag", "push"]
    );
    assert_eq!(
        by(AuditQuery {
            since: Some(102),
            project: Some("ops".into()),
            ..all(1)
        })
        .await,
        ["delete_manifest"]
    );
}

/// The cap on open upload sessions: counted per owner, in the database; a finished, cancelled
/// or expired session (a deleted row) no longer counts; ownerless sessions count for nobody.
pub async fn upload_owners(meta: &dyn MetaStore) {
    use crate::UploadCap;
    let session = |id: &str, owner: Option<&str>| UploadRecord {
        id: id.into(),
        repository: repo("suite/owned"),
        offset: 0,
        hash_state: vec![1],
        backend_state: vec![],
        created_at: 1,
        updated_at: 1,
        owner: owner.map(str::to_string),
    };
    let count =
        |owner: &'static str| async move { meta.count_uploads_of(owner).await.expect("count") };
    // alice opens the sessions `ids` under a cap of 3, each let in.
    let open_alice = |ids: std::ops::Range<u32>| async move {
        for i in ids {
            let opened = meta
                .create_upload_capped(&session(&format!("01ALICE{i}"), Some("alice")), 3)
                .await
                .expect("create");
            assert_eq!(opened, UploadCap::Opened, "session {i}");
        }
    };
    assert_eq!(count("alice").await, 0);
    open_alice(0..3).await;
    assert_eq!(count("alice").await, 3);
    // The fourth is refused and writes nothing; others are not affected.
    assert_eq!(
        meta.create_upload_capped(&session("01ALICE3", Some("alice")), 3)
            .await
            .expect("create"),
        UploadCap::Full { open: 3 }
    );
    assert_eq!(meta.upload("01ALICE3").await.expect("get"), None);
    let robot = session("01ROBOT0", Some("robot$ci"));
    assert_eq!(
        meta.create_upload_capped(&robot, 3).await.expect("create"),
        UploadCap::Opened
    );
    let anonymous = session("01ANON0", Some("anonymous@192.0.2.7"));
    assert_eq!(
        meta.create_upload_capped(&anonymous, 1)
            .await
            .expect("create"),
        UploadCap::Opened
    );
    assert_eq!(meta.upload("01ANON0").await.expect("get"), Some(anonymous));
    assert_eq!(count("robot$ci").await, 1);
    assert_eq!(count("anonymous@192.0.2.7").await, 1);
    assert_eq!(count("alice").await, 3);
    // Ownerless sessions (`berth migrate`'s) are never refused and count for nobody.
    for i in 0..2 {
        let unowned = session(&format!("01NOBODY{i}"), None);
        assert_eq!(
            meta.create_upload_capped(&unowned, 1)
                .await
                .expect("create"),
            UploadCap::Opened
        );
    }
    meta.create_upload(&session("01NOBODY2", None))
        .await
        .expect("create");
    assert_eq!(count("alice").await, 3);

    // Finished or cancelled (the row deleted), or expired (deleted by expiry): no longer counted.
    assert!(meta.delete_upload("01ALICE0").await.expect("delete"));
    assert_eq!(count("alice").await, 2);
    assert!(
        meta.delete_idle_upload("01ALICE1", 1)
            .await
            .expect("expire")
    );
    assert_eq!(count("alice").await, 1);
    open_alice(3..5).await;
    assert_eq!(count("alice").await, 3);
    // A lowered limit refuses at once; a raised one lets more in.
    assert_eq!(
        meta.create_upload_capped(&session("01ALICE5", Some("alice")), 2)
            .await
            .expect("create"),
        UploadCap::Full { open: 3 }
    );
    assert_eq!(
        meta.create_upload_capped(&session("01ALICE5", Some("alice")), 4)
            .await
            .expect("create"),
        UploadCap::Opened
    );
    let owned = meta.upload("01ALICE5").await.expect("get").expect("exists");
    assert_eq!(owned.owner.as_deref(), Some("alice"));
    for id in [
        "01ALICE2",
        "01ALICE3",
        "01ALICE4",
        "01ALICE5",
        "01ROBOT0",
        "01ANON0",
        "01NOBODY0",
        "01NOBODY1",
        "01NOBODY2",
    ] {
        meta.delete_upload(id).await.expect("delete");
    }
    assert_eq!(count("alice").await, 0);
}

/// Events appended in one batch: all of them, in order, as given; an empty batch is nothing.
pub async fn audit_batches(meta: &dyn MetaStore) {
    let query = AuditQuery {
        action: Some("pull".into()),
        limit: 1000,
        ..AuditQuery::default()
    };
    let before = meta.events(&query).await.expect("events").len();
    meta.record_events(&[]).await.expect("an empty batch");
    let event = |i: usize| AuditEvent {
        at: 1000 + i as i64,
        actor: if i.is_multiple_of(2) {
            "alice".into()
        } else {
            "robot$ci".into()
        },
        source: (!i.is_multiple_of(3)).then(|| "192.0.2.7".to_string()),
        action: "pull".into(),
        project: Some("batch".into()),
        resource: format!("batch/app:v{i}@sha256:{i:064x}"),
        detail: String::new(),
    };
    // More than one INSERT's worth of rows, in one transaction.
    let batch: Vec<AuditEvent> = (0..crate::audit::EVENTS_PER_INSERT + 7)
        .map(event)
        .collect();
    meta.record_events(&batch).await.expect("record a batch");
    meta.record_events(&[event(9999)])
        .await
        .expect("record one");
    let stored = meta.events(&query).await.expect("events");
    assert_eq!(stored.len(), before + batch.len() + 1);
    // Newest first: the single event, then the batch from its end, ids decreasing.
    assert_eq!(stored[0].event, event(9999));
    let ours: Vec<AuditEvent> = stored[1..=batch.len()]
        .iter()
        .rev()
        .map(|r| r.event.clone())
        .collect();
    assert_eq!(ours, batch);
    assert!(stored.windows(2).all(|w| w[0].id > w[1].id));
    let by_robot = meta
        .events(&AuditQuery {
            actor: Some("robot$ci".into()),
            project: Some("batch".into()),
            ..query.clone()
        })
        .await
        .expect("events");
    // The odd ones of the batch, and the single event (9999).
    assert_eq!(by_robot.len(), batch.len() / 2 + 1);
}

/// The listings `berth migrate` walks: every page in order, nothing skipped or repeated.
pub async fn inventory(meta: &dyn MetaStore) {
    let (r, other) = (repo("inventory/r"), repo("inventory/other"));
    let blobs: Vec<BlobRecord> = (0..5)
        .map(|i| blob(format!("inventory blob {i}").as_bytes()))
        .collect();
    for b in &blobs {
        meta.add_blob(&r, b).await.expect("add");
    }
    let elsewhere = blob(b"inventory elsewhere");
    meta.add_blob(&other, &elsewhere).await.expect("add");

    // All blobs, two at a time: sorted, each once, ours among them.
    let mut all = Vec::new();
    let mut last: Option<Digest> = None;
    loop {
        let page = meta.all_blobs(last.as_ref(), 2).await.expect("all blobs");
        assert!(page.items.len() <= 2);
        last = page.items.last().map(|b| b.digest.clone());
        all.extend(page.items);
        if !page.more {
            break;
        }
    }
    let digests: Vec<String> = all.iter().map(|b| b.digest.to_string()).collect();
    let mut sorted = digests.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(digests, sorted, "sorted, no repeats");
    for b in blobs.iter().chain([&elsewhere]) {
        assert!(all.contains(b), "{} missing", b.digest);
    }

    // The repository's blobs: exactly its own.
    let mut linked = Vec::new();
    let mut last: Option<Digest> = None;
    loop {
        let page = meta
            .repository_blob_digests(&r, last.as_ref(), 2)
            .await
            .expect("repository blobs");
        last = page.items.last().cloned();
        linked.extend(page.items);
        if !page.more {
            break;
        }
    }
    let mut expected: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
    expected.sort_by_key(|d| d.to_string());
    assert_eq!(linked, expected);
    let none = meta
        .repository_blob_digests(&repo("inventory/none"), None, 10)
        .await
        .expect("unknown repository");
    assert!(none.items.is_empty() && !none.more);

    // Manifests with their bytes, and tags with their targets.
    let m1 = manifest(b"{\"inventory\":1}", &[&blobs[0]], &["b", "a"]);
    let m2 = manifest(b"{\"inventory\":2}", &[&blobs[1]], &["c"]);
    let m3 = manifest(b"{\"inventory\":3}", &[], &[]);
    for m in [&m1, &m2, &m3] {
        meta.put_manifest(&r, m).await.expect("put");
    }
    let first = meta
        .repository_manifests(&r, None, 2)
        .await
        .expect("manifests");
    assert!(first.more);
    let rest = meta
        .repository_manifests(&r, Some(&first.items[1].digest), 2)
        .await
        .expect("manifests");
    assert!(!rest.more);
    let mut got: Vec<_> = first.items.into_iter().chain(rest.items).collect();
    assert_eq!(got.len(), 3);
    let mut want = vec![&m1, &m2, &m3];
    want.sort_by_key(|m| m.digest.to_string());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.digest, w.digest);
        assert_eq!(g.content, w.content);
        assert_eq!(g.media_type, w.media_type);
    }
    got.clear();

    let first = meta.tag_targets(&r, None, 2).await.expect("tags");
    assert!(first.more);
    assert_eq!(
        first.items,
        vec![(tag("a"), m1.digest.clone()), (tag("b"), m1.digest.clone())]
    );
    let rest = meta.tag_targets(&r, Some("b"), 2).await.expect("tags");
    assert_eq!(rest.items, vec![(tag("c"), m2.digest.clone())]);
    assert!(!rest.more);

    // The signing key: read without being created, then the one stored.
    let stored = meta.stored_signing_key().await.expect("key");
    let key = meta
        .signing_key(b"inventory key")
        .await
        .expect("signing key");
    if let Some(stored) = stored {
        assert_eq!(stored, key);
    }
    assert_eq!(meta.stored_signing_key().await.expect("key"), Some(key));
}

pub async fn login_throttle(meta: &dyn MetaStore) {
    use crate::ThrottleRecord;
    let keys = ["account:suite".to_string(), "address:192.0.2.1".to_string()];
    assert!(meta.throttle_records(&keys).await.expect("read").is_empty());
    // Twenty failures at once, as from many replicas: each one counts.
    let fail = |at: i64| -> crate::ThrottleUpdate {
        Box::new(move |r: Option<ThrottleRecord>| {
            let mut r = r.unwrap_or(ThrottleRecord {
                window_start: at,
                ..ThrottleRecord::default()
            });
            r.failures += 1;
            r.last_seen = r.last_seen.max(at);
            Some(r)
        })
    };
    let updates = (0..20).map(|i| meta.update_throttle_record(&keys[0], fail(1_000 + i)));
    for result in futures_util::future::join_all(updates).await {
        result.expect("update");
    }
    let (before, after) = meta
        .update_throttle_record(
            &keys[0],
            Box::new(|r| {
                r.map(|r| ThrottleRecord {
                    locked_until: Some(9_000),
                    strikes: 1,
                    ..r
                })
            }),
        )
        .await
        .expect("lock");
    let before = before.expect("stored");
    assert_eq!(before.failures, 20);
    assert_eq!(before.last_seen, 1_019);
    assert_eq!(after.and_then(|r| r.locked_until), Some(9_000));
    meta.update_throttle_record(&keys[1], fail(5_000))
        .await
        .expect("address");
    let found = meta.throttle_records(&keys).await.expect("read");
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, keys[0]);
    assert_eq!(found[0].1.strikes, 1);
    assert_eq!(found[1].1.window_start, 5_000);

    // Pruning spares recent failures and lock-outs that have not ended long enough ago.
    assert_eq!(
        meta.prune_throttle_records(2_000, 9_000)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        meta.prune_throttle_records(2_000, 9_001)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(meta.throttle_records(&keys).await.expect("read").len(), 1);
    // `None` deletes; deleting what is not there changes nothing.
    for _ in 0..2 {
        meta.update_throttle_record(&keys[1], Box::new(|_| None))
            .await
            .expect("delete");
    }
    assert!(meta.throttle_records(&keys).await.expect("read").is_empty());
}

/// Garbage collection's deletions re-check everything: a tagged, young, listed or subject
/// manifest stays; a referenced or young link stays; a linked or young blob stays.
pub async fn collector(meta: &dyn MetaStore) {
    let r = repo("suite/gc");
    let (kept, loose) = (blob(b"gc kept layer"), blob(b"gc loose layer"));
    for b in [&kept, &loose] {
        meta.add_blob(&r, b).await.expect("add");
    }
    let image = manifest(b"gc image", &[&kept], &[]);
    meta.put_manifest(&r, &image).await.expect("image");
    let mut index = manifest(b"gc index", &[], &[]);
    index.manifests = vec![image.digest.clone()];
    meta.put_manifest(&r, &index).await.expect("index");
    let tagged = manifest(b"gc tagged", &[&kept], &["v1"]);
    meta.put_manifest(&r, &tagged).await.expect("tagged");
    let mut signature = manifest(b"gc signature", &[], &[]);
    signature.subject = Some(tagged.digest.clone());
    meta.put_manifest(&r, &signature).await.expect("signature");

    let snapshot = meta.gc_snapshot().await.expect("snapshot");
    let (repo_id, _) = snapshot
        .repositories
        .iter()
        .find(|(_, name)| name == "suite/gc")
        .expect("repository listed")
        .clone();
    let id = |digest: &Digest| {
        snapshot
            .manifests
            .iter()
            .find(|m| m.repository_id == repo_id && &m.digest == digest)
            .expect("manifest listed")
            .clone()
    };
    let (image_row, index_row, tagged_row, signature_row) = (
        id(&image.digest),
        id(&index.digest),
        id(&tagged.digest),
        id(&signature.digest),
    );
    assert_eq!((tagged_row.tags, image_row.tags), (1, 0));
    assert_eq!(signature_row.subject, Some(tagged.digest.clone()));
    assert_eq!(image_row.size, b"gc image".len() as u64);
    assert!(
        snapshot
            .references
            .iter()
            .any(|x| x.manifest_id == index_row.id && x.manifest && x.digest == image.digest)
    );
    assert!(
        snapshot
            .links
            .iter()
            .any(|l| l.repository_id == repo_id && l.digest == loose.digest)
    );
    assert!(snapshot.blobs.iter().any(|b| b.record == loose));

    let now = meta.clock().now();
    let (past, future) = (now - 3600, now + 3600);
    let all = [image_row.id, index_row.id, tagged_row.id, signature_row.id];
    assert_eq!(
        meta.sweep_manifests(&all, past).await.expect("young"),
        Vec::<i64>::new()
    );
    // The image is listed by the index: it stays until the index has gone, earlier in the
    // same sweep. The tagged manifest stays, and so does the signature's subject.
    assert_eq!(
        meta.sweep_manifests(&[image_row.id, tagged_row.id], future)
            .await
            .expect("sweep"),
        Vec::<i64>::new()
    );
    // In one sweep, in the order given: the image, still listed, stays; the index goes; the
    // signature stays while its subject exists. A second sweep takes the image, now listed by
    // nothing.
    assert_eq!(
        meta.sweep_manifests(&all, future).await.expect("sweep"),
        vec![index_row.id]
    );
    assert_eq!(
        meta.sweep_manifests(&[image_row.id, tagged_row.id], future)
            .await
            .expect("sweep"),
        vec![image_row.id]
    );
    assert!(
        meta.manifest(&r, &index.digest)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        meta.manifest(&r, &tagged.digest)
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        meta.manifest(&r, &signature.digest)
            .await
            .expect("get")
            .is_some()
    );

    let links = [
        (repo_id, kept.digest.clone()),
        (repo_id, loose.digest.clone()),
    ];
    assert_eq!(meta.sweep_links(&links, past).await.expect("young"), 0);
    assert_eq!(meta.sweep_links(&links, future).await.expect("sweep"), 1);
    assert!(
        meta.repository_blob(&r, &loose.digest)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        meta.repository_blob(&r, &kept.digest)
            .await
            .expect("get")
            .is_some()
    );

    let digests = [kept.digest.clone(), loose.digest.clone()];
    assert_eq!(
        meta.sweep_blobs(&digests, past).await.expect("young"),
        Vec::new()
    );
    assert_eq!(
        meta.sweep_blobs(&digests, future).await.expect("sweep"),
        vec![loose.clone()]
    );
    assert_eq!(meta.blob(&loose.digest).await.expect("get"), None);
    // A blob swept is added again by the next upload of its bytes.
    assert_eq!(meta.add_blob(&r, &loose).await.expect("again"), loose);
}

/// What a repository is sent again (a blob uploaded or mounted, a manifest put) is dated
/// again: garbage collection's grace counts from the last push, so a collection whose cutoff
/// falls between a first push long ago and a push again now spares it.
pub async fn pushed_again_is_young_again(meta: &dyn MetaStore, clock: &crate::ManualClock) {
    let r = repo("suite/again");
    let (layer, mounted) = (blob(b"again layer"), blob(b"again mounted"));
    for b in [&layer, &mounted] {
        meta.add_blob(&r, b).await.expect("add");
    }
    let image = manifest(b"again image", &[], &[]);
    meta.put_manifest(&r, &image).await.expect("image");
    // An hour later, the cutoff is now.
    clock.advance(std::time::Duration::from_secs(3600));
    let cutoff = clock.now();
    meta.add_blob(&r, &layer).await.expect("upload again");
    assert!(meta.link_blob(&r, &mounted.digest).await.expect("mount"));
    meta.put_manifest(&r, &image).await.expect("put again");

    let snapshot = meta.gc_snapshot().await.expect("snapshot");
    let (repo_id, _) = snapshot
        .repositories
        .iter()
        .find(|(_, name)| name == "suite/again")
        .expect("repository listed")
        .clone();
    let image_id = snapshot
        .manifests
        .iter()
        .find(|m| m.repository_id == repo_id && m.digest == image.digest)
        .expect("manifest listed")
        .id;
    let links = [
        (repo_id, layer.digest.clone()),
        (repo_id, mounted.digest.clone()),
    ];
    assert_eq!(meta.sweep_links(&links, cutoff).await.expect("sweep"), 0);
    assert_eq!(
        meta.sweep_manifests(&[image_id], cutoff)
            .await
            .expect("sweep"),
        Vec::<i64>::new()
    );
    // A cutoff after the second push takes them.
    let later = clock.now() + 1;
    assert_eq!(meta.sweep_links(&links, later).await.expect("sweep"), 2);
    assert_eq!(
        meta.sweep_manifests(&[image_id], later)
            .await
            .expect("sweep"),
        vec![image_id]
    );
}

/// Settings round-trip; usage counts each blob and manifest once per project, and only the
/// project's own repositories (not `lq-other/...` nor `lqz/...`).
pub async fn lifecycle(meta: &dyn MetaStore) {
    assert_eq!(
        meta.project_settings("lq").await.expect("settings"),
        Default::default()
    );
    assert!(matches!(
        meta.set_quota("lq", Some(10)).await,
        Err(MetaError::NotFound(_))
    ));
    meta.create_project(&project("lq", false, None), None)
        .await
        .expect("project");
    meta.set_quota("lq", Some(1000)).await.expect("quota");
    meta.set_immutable_tags("lq", &["v*".to_string(), "release-?".to_string()])
        .await
        .expect("patterns");
    let settings = meta.project_settings("lq").await.expect("settings");
    assert_eq!(settings.quota_bytes, Some(1000));
    assert_eq!(settings.immutable_tags, vec!["v*", "release-?"]);
    meta.set_quota("lq", None).await.expect("no quota");
    assert_eq!(
        meta.project_settings("lq")
            .await
            .expect("settings")
            .quota_bytes,
        None
    );

    let (shared, only_a) = (blob(b"lq shared layer"), blob(b"lq only in a"));
    let (a, b) = (repo("lq/a"), repo("lq/b/deep"));
    for (r, x) in [(&a, &shared), (&a, &only_a), (&b, &shared)] {
        meta.add_blob(r, x).await.expect("add");
    }
    let image = manifest(b"lq image", &[&shared], &["1"]);
    meta.put_manifest(&a, &image).await.expect("manifest");
    meta.put_manifest(&b, &image).await.expect("manifest");
    for outside in ["lq-other/c", "lqz/d", "lq.x/e"] {
        meta.add_blob(&repo(outside), &blob(outside.as_bytes()))
            .await
            .expect("outside");
    }
    let usage = meta.project_usage("lq").await.expect("usage");
    let shared_size = shared.size;
    assert_eq!(
        usage,
        crate::ProjectUsage {
            blobs: 2,
            blob_bytes: shared_size + only_a.size,
            manifests: 1,
            manifest_bytes: b"lq image".len() as u64,
        }
    );
    let repos = meta.repository_usage("lq").await.expect("repositories");
    let names: Vec<&str> = repos.iter().map(|r| r.repository.as_str()).collect();
    assert_eq!(names, ["lq/a", "lq/b/deep"]);
    let m = b"lq image".len() as u64;
    assert_eq!(
        (repos[0].bytes, repos[0].unique_bytes, repos[0].shared_bytes),
        (shared_size + only_a.size + m, only_a.size, shared_size + m)
    );
    assert_eq!(
        (repos[1].bytes, repos[1].unique_bytes, repos[1].shared_bytes),
        (shared_size + m, 0, shared_size + m)
    );
    assert!(
        meta.project_has_blob("lq", &shared.digest)
            .await
            .expect("has")
    );
    assert!(
        !meta
            .project_has_blob("lq", &blob(b"lqz/d").digest)
            .await
            .expect("has")
    );
    assert_eq!(
        meta.project_usage("nothing").await.expect("usage"),
        Default::default()
    );

    // An immutable tag stays on its manifest: a PUT moving it changes nothing and fails; the
    // same manifest again is fine; once the rule is lifted (not immutable), it moves.
    let (first, second) = (
        manifest(b"lq release 1", &[&shared], &["v1"]),
        manifest(b"lq release 2", &[&shared], &["v1", "other"]),
    );
    let guarded = |mut m: NewManifest| {
        m.immutable_tags = vec![tag("v1")];
        m
    };
    meta.put_manifest(&a, &guarded(first.clone()))
        .await
        .expect("first");
    assert!(matches!(
        meta.put_manifest(&a, &guarded(second.clone())).await,
        Err(MetaError::TagImmutable(t)) if t.as_str() == "v1"
    ));
    let tagged = |t: &'static str| {
        let a = a.clone();
        async move {
            meta.tagged_manifest(&a, &tag(t))
                .await
                .expect("get")
                .map(|m| m.digest)
        }
    };
    assert_eq!(tagged("v1").await, Some(first.digest.clone()));
    assert_eq!(
        tagged("other").await,
        None,
        "nothing of the refused PUT stays"
    );
    assert!(
        meta.manifest(&a, &second.digest)
            .await
            .expect("get")
            .is_none()
    );
    meta.put_manifest(&a, &guarded(first.clone()))
        .await
        .expect("same again");
    meta.put_manifest(&a, &second).await.expect("rule lifted");
    assert_eq!(tagged("v1").await, Some(second.digest.clone()));

    // Retention: the policy round-trips; tags come with their times; a pull is recorded once
    // an interval; a tag is deleted only while it names the manifest it was judged by.
    meta.set_retention("lq", r#"{"rules":[]}"#)
        .await
        .expect("policy");
    assert_eq!(
        meta.project_settings("lq")
            .await
            .expect("settings")
            .retention,
        r#"{"rules":[]}"#
    );
    assert!(
        meta.projects_with_retention()
            .await
            .expect("projects")
            .contains(&"lq".to_string())
    );
    let tags = meta.project_tags("lq").await.expect("tags");
    let names: Vec<String> = tags
        .iter()
        .map(|t| format!("{}:{}", t.repository, t.tag))
        .collect();
    assert_eq!(names, ["lq/a:1", "lq/a:other", "lq/a:v1", "lq/b/deep:1"]);
    assert!(
        tags.iter()
            .all(|t| t.pulled_at.is_none() && t.pushed_at > 0)
    );
    let now = meta.clock().now();
    meta.record_pull(&a, &tag("v1"), now, now - 3600)
        .await
        .expect("pull");
    meta.record_pull(&a, &tag("v1"), now + 10, now - 3600)
        .await
        .expect("pull again");
    let pulled = |tags: Vec<crate::TagRecord>| {
        tags.into_iter()
            .find(|t| t.tag.as_str() == "v1")
            .and_then(|t| t.pulled_at)
    };
    assert_eq!(
        pulled(meta.project_tags("lq").await.expect("tags")),
        Some(now),
        "within the interval"
    );
    meta.record_pull(&a, &tag("v1"), now + 4000, now + 1)
        .await
        .expect("later");
    assert_eq!(
        pulled(meta.project_tags("lq").await.expect("tags")),
        Some(now + 4000)
    );
    assert!(
        !meta
            .delete_tag_naming(&a, &tag("v1"), &first.digest)
            .await
            .expect("moved since")
    );
    assert!(
        meta.delete_tag_naming(&a, &tag("v1"), &second.digest)
            .await
            .expect("delete")
    );
    assert_eq!(tagged("v1").await, None);
    meta.set_retention("lq", "").await.expect("no policy");
    assert!(
        !meta
            .projects_with_retention()
            .await
            .expect("projects")
            .contains(&"lq".to_string())
    );
}
