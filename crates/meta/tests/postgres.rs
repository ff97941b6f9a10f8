//! `PostgresMeta` against a real PostgreSQL: the shared suite, and replicas racing on one
//! database.
//!
//! Each test starts a throw-away cluster of its own (initdb into a temporary directory, TCP on
//! loopback only, password auth, stopped when the test ends, even by a panic), unless
//! `BERTH_TEST_POSTGRES_URL` names a server to use instead, e.g.
//! `postgres://berth:secret@127.0.0.1:5432/postgres`: then each test creates a fresh database
//! there (the URL's user must be allowed to) and drops it when it passes.

use std::future::Future;
use std::sync::Arc;

use berth_meta::{
    Accounts, AuditEvent, AuditLog, BlobIndex, BlobRecord, ManifestIndex, ManualClock, MetaError,
    MetaStore, NewManifest, PostgresMeta, ProjectRecord, Role, UploadCap, UploadRecord,
    UploadSessions, UserRecord, testsuite,
};
use berth_oci::{Digest, Repository, Tag};
use berth_testkit::postgres::TestDatabase;
use tokio::sync::Barrier;

/// A new database on the test server, for one case of the suite.
struct Fresh {
    meta: PostgresMeta,
    clock: Arc<ManualClock>,
    db: TestDatabase,
}

impl testsuite::Fresh for Fresh {
    fn meta(&self) -> &dyn MetaStore {
        &self.meta
    }

    fn clock(&self) -> &ManualClock {
        &self.clock
    }

    async fn finish(self) {
        self.meta.close().await;
        self.db.drop_database().await;
    }
}

async fn fresh() -> Fresh {
    let db = TestDatabase::create().await;
    let clock = ManualClock::starting_now();
    let meta = PostgresMeta::connect(db.url(), 4)
        .await
        .expect("connect")
        .with_clock(clock.clone());
    Fresh { meta, clock, db }
}

/// The shared suite, one test per case: `suite::<case>`.
mod suite {
    berth_meta::suite_tests!(super::fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_a_probe_applies_none() {
    let db = TestDatabase::create().await;
    // A probe (`berth serve --check-config`) sees the migrations to apply, and applies none.
    for _ in 0..2 {
        let probe = PostgresMeta::probe(db.url()).await.expect("probe");
        assert!(probe.pending_migrations > 0, "{probe:?}");
    }
    let meta = PostgresMeta::connect(db.url(), 4).await.expect("connect");
    meta.check().await.expect("check");
    // Opening again finds the migrations applied.
    let again = PostgresMeta::connect(db.url(), 1).await.expect("reconnect");
    again.check().await.expect("check");
    let probe = PostgresMeta::probe(db.url()).await.expect("probe");
    assert_eq!(probe.pending_migrations, 0);
    drop((meta, again));
    db.drop_database().await;
}

/// Replicas: each has its own pool, so every task below runs on its own connection.
const REPLICAS: usize = 16;
/// Each race is run this many times with fresh names, to give the interleavings a chance.
const ROUNDS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_race_on_one_database() {
    let db = TestDatabase::create().await;
    // Replicas starting at once all migrate: the migrator's advisory lock lets one do it.
    let replicas: Vec<PostgresMeta> = race_n(REPLICAS, {
        let url = db.url().to_string();
        move |_| {
            let url = url.clone();
            async move { PostgresMeta::connect(&url, 2).await }
        }
    })
    .await
    .into_iter()
    .map(|r| r.expect("connect"))
    .collect();
    let replicas = Arc::new(replicas);

    for round in 0..ROUNDS {
        blobs(&replicas, round).await;
        manifests_and_tags(&replicas, round).await;
        puts_race_deletes(&replicas, round).await;
        tags_move_while_deleted(&replicas, round).await;
        accounts(&replicas, round).await;
        uploads_keys_and_audit(&replicas, round).await;
        upload_cap_and_audit_batches(&replicas, round).await;
    }
    drop(replicas);
    db.drop_database().await;
}

fn repo(s: &str) -> Repository {
    s.parse().expect("repository")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("tag")
}

fn blob(data: &[u8], key: &str) -> BlobRecord {
    BlobRecord {
        digest: Digest::sha256_of(data),
        size: data.len() as u64,
        storage_key: key.to_string(),
    }
}

fn manifest(content: &str, blobs: &[&Digest], manifests: &[&Digest], tags: &[&str]) -> NewManifest {
    NewManifest {
        digest: Digest::sha256_of(content.as_bytes()),
        media_type: berth_oci::media_type::OCI_MANIFEST.to_string(),
        content: content.as_bytes().to_vec(),
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        manifests: manifests.iter().map(|d| (*d).clone()).collect(),
        tags: tags.iter().map(|t| tag(t)).collect(),
        immutable_tags: Vec::new(),
        audit: None,
    }
}

/// Runs `f(i)` for i in 0..n as concurrent tasks released together by a barrier, and returns
/// their results in order of `i`.
async fn race_n<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (f, barrier) = (f.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                f(i).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.expect("task panicked"));
    }
    out
}

/// `f(replica i, i)` on every replica at once.
async fn race<T, F, Fut>(replicas: &Arc<Vec<PostgresMeta>>, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(PostgresMeta, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let replicas = replicas.clone();
    race_n(replicas.len(), move |i| f(replicas[i].clone(), i)).await
}

fn ok_count<T>(results: &[Result<T, MetaError>]) -> usize {
    results.iter().filter(|r| r.is_ok()).count()
}

fn trues(results: Vec<Result<bool, MetaError>>) -> usize {
    results
        .into_iter()
        .map(|r| r.expect("no database error"))
        .filter(|b| *b)
        .count()
}

async fn blobs(replicas: &Arc<Vec<PostgresMeta>>, round: usize) {
    let meta = &replicas[0];
    let data = format!("race blob {round}");
    // Every replica adds the same digest with its own storage key, half of them to each of two
    // repositories that do not exist yet: one record wins, and everyone is told which.
    let added = race(replicas, {
        let data = data.clone();
        move |m, i| {
            let b = blob(data.as_bytes(), &format!("blobs/{i}"));
            async move {
                m.add_blob(&repo(&format!("race{round}/r{}", i % 2)), &b)
                    .await
            }
        }
    })
    .await;
    let added: Vec<BlobRecord> = added.into_iter().map(|r| r.expect("add_blob")).collect();
    let stored = meta
        .blob(&Digest::sha256_of(data.as_bytes()))
        .await
        .expect("blob")
        .expect("stored");
    assert!(added.iter().all(|b| *b == stored), "one record in force");
    let digest = stored.digest.clone();
    assert_eq!(
        meta.blob_repositories(&digest, 10).await.expect("repos"),
        [
            repo(&format!("race{round}/r0")),
            repo(&format!("race{round}/r1"))
        ]
    );

    // Linking the same blob into one new repository: all succeed, one link.
    let target = repo(&format!("race{round}/linked"));
    let linked = race(replicas, {
        let (digest, target) = (digest.clone(), target.clone());
        move |m, _| {
            let (digest, target) = (digest.clone(), target.clone());
            async move { m.link_blob(&target, &digest).await }
        }
    })
    .await;
    assert_eq!(trues(linked), REPLICAS, "every link succeeds");
    assert_eq!(
        meta.blob_repositories(&digest, 10)
            .await
            .expect("repos")
            .len(),
        3
    );
    // Unlinking it: exactly one replica removes it.
    let unlinked = race(replicas, {
        let (digest, target) = (digest.clone(), target.clone());
        move |m, _| {
            let (digest, target) = (digest.clone(), target.clone());
            async move { m.unlink_blob(&target, &digest).await }
        }
    })
    .await;
    assert_eq!(trues(unlinked), 1, "one unlink wins");
}

async fn manifests_and_tags(replicas: &Arc<Vec<PostgresMeta>>, round: usize) {
    let meta = &replicas[0];
    let r = repo(&format!("race{round}/manifests"));
    let layer = blob(format!("layer {round}").as_bytes(), "blobs/layer");
    meta.add_blob(&r, &layer).await.expect("layer");

    // The same manifest and tag from every replica: idempotent, no error.
    let same = manifest(
        &format!("{{\"same\":{round}}}"),
        &[&layer.digest],
        &[],
        &["same"],
    );
    let put = race(replicas, {
        let (r, same) = (r.clone(), same.clone());
        move |m, _| {
            let (r, same) = (r.clone(), same.clone());
            async move { m.put_manifest(&r, &same).await }
        }
    })
    .await;
    assert_eq!(ok_count(&put), REPLICAS, "{put:?}");

    // Different manifests, each moving `latest` and the pair `x`/`y` (in either order) and
    // adding a tag of its own: all succeed, and `latest` names one of them.
    let put = race(replicas, {
        let (r, layer) = (r.clone(), layer.digest.clone());
        move |m, i| {
            let (r, layer) = (r.clone(), layer.clone());
            let own = format!("t{i}");
            let pair: [&str; 2] = if i % 2 == 0 { ["x", "y"] } else { ["y", "x"] };
            let nm = manifest(
                &format!("{{\"round\":{round},\"i\":{i}}}"),
                &[&layer],
                &[],
                &["latest", pair[0], pair[1], &own],
            );
            async move { m.put_manifest(&r, &nm).await }
        }
    })
    .await;
    assert_eq!(ok_count(&put), REPLICAS, "{put:?}");
    let tags = meta.tags(&r, None, 100).await.expect("tags").expect("repo");
    assert_eq!(
        tags.items.len(),
        REPLICAS + 4,
        "latest, same, x, y and one each"
    );
    let latest = meta
        .tagged_manifest(&r, &tag("latest"))
        .await
        .expect("latest")
        .expect("tagged");
    let text = String::from_utf8(latest.content).expect("utf-8");
    assert!(text.starts_with(&format!("{{\"round\":{round},")), "{text}");

    // Deleting one tag, then one manifest, from every replica: one winner each.
    let deleted = race(replicas, {
        let r = r.clone();
        move |m, _| {
            let r = r.clone();
            async move { m.delete_tag(&r, &tag("t0")).await }
        }
    })
    .await;
    assert_eq!(trues(deleted), 1, "one delete_tag wins");
    let deleted = race(replicas, {
        let (r, digest) = (r.clone(), same.digest.clone());
        move |m, _| {
            let (r, digest) = (r.clone(), digest.clone());
            async move { m.delete_manifest(&r, &digest).await }
        }
    })
    .await;
    assert_eq!(trues(deleted), 1, "one delete_manifest wins");
    assert_eq!(
        meta.tagged_manifest(&r, &tag("same")).await.expect("get"),
        None,
        "its tag went with it"
    );
}

/// Writes whose checks race with deletes of what they check: each ends as one serial order
/// would have it (stored, or refused with BlobUnknown / ManifestUnknown), never in a database
/// error such as a deadlock or a foreign key violation.
async fn puts_race_deletes(replicas: &Arc<Vec<PostgresMeta>>, round: usize) {
    let meta = &replicas[0];
    let r = repo(&format!("race{round}/churn"));
    let layer = blob(format!("churn layer {round}").as_bytes(), "blobs/churn");
    meta.add_blob(&r, &layer).await.expect("layer");
    let child = manifest(
        &format!("{{\"child\":{round}}}"),
        &[&layer.digest],
        &[],
        &["child"],
    );
    meta.put_manifest(&r, &child).await.expect("child");

    let outcomes = race(replicas, {
        let (r, layer, child) = (r.clone(), layer.clone(), child.clone());
        move |m, i| {
            let (r, layer, child) = (r.clone(), layer.clone(), child.clone());
            async move {
                for step in 0..5 {
                    match (i + step) % 4 {
                        // Re-push the child with its tags, and an index over it.
                        0 => m.put_manifest(&r, &child).await?,
                        1 => {
                            let index = manifest(
                                &format!("{{\"index\":{i},\"step\":{step}}}"),
                                &[],
                                &[&child.digest],
                                &["index", "child"],
                            );
                            match m.put_manifest(&r, &index).await {
                                Ok(()) | Err(MetaError::ManifestUnknown(_)) => {}
                                Err(e) => return Err(e),
                            }
                        }
                        2 => {
                            m.delete_manifest(&r, &child.digest).await?;
                        }
                        // Unlink and re-add the layer the child needs.
                        _ => {
                            if i % 2 == 0 {
                                m.unlink_blob(&r, &layer.digest).await?;
                            } else {
                                m.add_blob(&r, &layer).await?;
                            }
                        }
                    }
                }
                Ok::<_, MetaError>(())
            }
        }
    })
    .await;
    // Re-pushing the child may meet an unlinked layer: that is BlobUnknown, not a failure.
    for outcome in outcomes {
        match outcome {
            Ok(()) | Err(MetaError::BlobUnknown(_)) => {}
            Err(e) => panic!("a racing write failed: {e}"),
        }
    }
}

/// Many tags moving between manifests while those manifests are deleted: a put locks the
/// tags it moves, a delete the tags it removes, both in name order, so neither deadlocks.
async fn tags_move_while_deleted(replicas: &Arc<Vec<PostgresMeta>>, round: usize) {
    let meta = &replicas[0];
    let r = repo(&format!("race{round}/moving"));
    let layer = blob(format!("moving layer {round}").as_bytes(), "blobs/moving");
    meta.add_blob(&r, &layer).await.expect("layer");
    let names: Vec<String> = (0..24).map(|t| format!("t{t:02}")).collect();
    let outcomes = race(replicas, {
        let (r, layer, names) = (r.clone(), layer.digest.clone(), names.clone());
        move |m, i| {
            let (r, layer, names) = (r.clone(), layer.clone(), names.clone());
            async move {
                let tags: Vec<&str> = names.iter().map(String::as_str).collect();
                let mine = |n: usize| {
                    manifest(
                        &format!("{{\"moving\":{round},\"m\":{n}}}"),
                        &[&layer],
                        &[],
                        &tags,
                    )
                };
                for step in 0..6 {
                    if (i + step) % 2 == 0 {
                        m.put_manifest(&r, &mine(i)).await?;
                    } else {
                        // Someone else's manifest, likely holding the tags right now.
                        m.delete_manifest(&r, &mine((i + step) % REPLICAS).digest)
                            .await?;
                    }
                }
                Ok::<_, MetaError>(())
            }
        }
    })
    .await;
    for outcome in outcomes {
        if let Err(e) = outcome {
            panic!("a racing write failed: {e}");
        }
    }
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: format!("id-of-{name}"),
        name: name.to_string(),
        password_hash: "$argon2id$race".to_string(),
        system_admin: false,
        disabled: false,
        created_at: 1,
        token_stamp: 0,
    }
}

fn project(name: &str, owner: Option<&str>) -> ProjectRecord {
    ProjectRecord {
        name: name.to_string(),
        public: false,
        owner: owner.map(str::to_string),
        created_at: 1,
    }
}

async fn accounts(replicas: &Arc<Vec<PostgresMeta>>, round: usize) {
    let meta = &replicas[0];
    let admin = format!("admin{round}");
    meta.create_user(&user(&admin), None).await.expect("admin");

    // One project name from every replica: one creates it, the others are told it exists.
    let created = race(replicas, {
        let admin = admin.clone();
        move |m, _| {
            let admin = admin.clone();
            async move {
                m.create_project(&project(&format!("shared{round}"), None), Some(&admin))
                    .await
            }
        }
    })
    .await;
    assert_eq!(ok_count(&created), 1, "{created:?}");
    assert!(
        created
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(MetaError::Conflict(_)))),
        "{created:?}"
    );

    // One account name with its personal project: one wins, whole; the others roll back.
    let name = format!("carol{round}");
    let created = race(replicas, {
        let name = name.clone();
        move |m, _| {
            let name = name.clone();
            async move {
                m.create_user(&user(&name), Some(&project(&name, Some(&name))))
                    .await
            }
        }
    })
    .await;
    assert_eq!(ok_count(&created), 1, "{created:?}");
    assert!(
        created
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(MetaError::Conflict(_)))),
        "{created:?}"
    );
    assert_eq!(
        meta.role(&name, &name).await.expect("role"),
        Some(Role::Admin)
    );

    // Every replica sets the same membership to some role: all succeed, one role stays.
    let set = race(replicas, {
        let (project, name) = (format!("shared{round}"), name.clone());
        move |m, i| {
            let (project, name) = (project.clone(), name.clone());
            async move { m.set_member(&project, &name, Role::ALL[i % 4]).await }
        }
    })
    .await;
    assert_eq!(ok_count(&set), REPLICAS, "{set:?}");
    assert!(
        meta.role(&format!("shared{round}"), &name)
            .await
            .expect("role")
            .is_some()
    );
}

async fn uploads_keys_and_audit(replicas: &Arc<Vec<PostgresMeta>>, round: usize) {
    let meta = &replicas[0];
    let upload = UploadRecord {
        id: format!("01RACE{round}"),
        repository: repo("race/uploads"),
        offset: 0,
        hash_state: vec![0],
        backend_state: vec![],
        created_at: 1,
        updated_at: 1,
        owner: None,
    };
    meta.create_upload(&upload).await.expect("create");
    // Every replica advances from offset 0 to its own offset: one compare-and-swap wins.
    let advanced = race(replicas, {
        let id = upload.id.clone();
        move |m, i| {
            let id = id.clone();
            async move {
                m.advance_upload(&id, 0, 100 + i as u64, &[i as u8], &[])
                    .await
            }
        }
    })
    .await;
    let winners: Vec<usize> = advanced
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.expect("advance").then_some(i))
        .collect();
    assert_eq!(winners.len(), 1, "one advance wins");
    let stored = meta.upload(&upload.id).await.expect("get").expect("exists");
    assert_eq!(stored.offset, 100 + winners[0] as u64);
    assert_eq!(stored.hash_state, [winners[0] as u8]);
    let deleted = race(replicas, {
        let id = upload.id.clone();
        move |m, _| {
            let id = id.clone();
            async move { m.delete_upload(&id).await }
        }
    })
    .await;
    assert_eq!(trues(deleted), 1, "one delete_upload wins");

    // Replicas starting at once agree on one signing key (the first round stores it).
    let keys = race(replicas, move |m, i| async move {
        m.signing_key(format!("key {round} {i}").as_bytes()).await
    })
    .await;
    let keys: Vec<Vec<u8>> = keys.into_iter().map(|k| k.expect("key")).collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "one key");
    assert!(keys[0].starts_with(b"key 0 "), "stored by the first round");

    // Concurrent events get distinct ids.
    let ids = race(replicas, move |m, i| async move {
        m.record_event(&AuditEvent {
            at: 1,
            actor: format!("replica{i}"),
            source: None,
            action: "race".into(),
            project: None,
            resource: format!("round {round}"),
            detail: String::new(),
        })
        .await
    })
    .await;
    let mut ids: Vec<i64> = ids.into_iter().map(|id| id.expect("record")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), REPLICAS, "distinct ids");
}

/// The cap on one owner's open upload sessions holds with every replica opening at once (each
/// tries twice, 32 tries for 5 places); batches of audit events recorded at once all land.
async fn upload_cap_and_audit_batches(replicas: &Arc<Vec<PostgresMeta>>, round: usize) {
    const CAP: u64 = 5;
    let owner = format!("racer{round}");
    let opened = race(replicas, {
        let owner = owner.clone();
        move |m, i| {
            let owner = owner.clone();
            async move {
                let mut results = Vec::new();
                for j in 0..2 {
                    let upload = UploadRecord {
                        id: format!("01CAP{round}R{i}T{j}"),
                        repository: repo("race/capped"),
                        offset: 0,
                        hash_state: vec![0],
                        backend_state: vec![],
                        created_at: 1,
                        updated_at: 1,
                        owner: Some(owner.clone()),
                    };
                    results.push(m.create_upload_capped(&upload, CAP).await);
                }
                results
            }
        }
    })
    .await;
    let outcomes: Vec<UploadCap> = opened
        .into_iter()
        .flatten()
        .map(|r| r.expect("create capped"))
        .collect();
    let won = outcomes.iter().filter(|o| **o == UploadCap::Opened).count();
    assert_eq!(won as u64, CAP, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, UploadCap::Opened | UploadCap::Full { open: CAP })),
        "{outcomes:?}"
    );
    let meta = &replicas[0];
    assert_eq!(meta.count_uploads_of(&owner).await.expect("count"), CAP);

    let batches = race(replicas, move |m, i| async move {
        let events: Vec<AuditEvent> = (0..20)
            .map(|j| AuditEvent {
                at: 1,
                actor: format!("replica{i}"),
                source: None,
                action: "pull".into(),
                project: Some(format!("batches{round}")),
                resource: format!("event {j}"),
                detail: String::new(),
            })
            .collect();
        m.record_events(&events).await
    })
    .await;
    assert!(batches.iter().all(Result::is_ok), "{batches:?}");
    let stored = meta
        .events(&berth_meta::AuditQuery {
            project: Some(format!("batches{round}")),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(stored.len(), REPLICAS * 20);
}
