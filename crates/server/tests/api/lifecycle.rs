//! Project quotas, storage usage and immutable tags through the HTTP API (both passes:
//! embedded, and two replicas on PostgreSQL + S3). Usage is checked against a recount from a
//! model of what the project holds after every step of a random sequence of pushes, mounts,
//! deletes and garbage collections.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_meta::{Clock, ManualClock};
use berth_registry::gc::GcOptions;
use berth_testkit::noise;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const ADMIN: &str = "admin-secret-1";

/// A registry with accounts; the client signed in as the administrator, project `team`
/// created.
async fn start() -> TestApp {
    start_with_clock(berth_meta::system_clock()).await
}

/// [`start`], going by `clock`.
async fn start_with_clock(clock: berth_meta::SharedClock) -> TestApp {
    let mut app = TestApp::start_with_clock(clock, |c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN.into();
    })
    .await;
    app.authorize(Some(&basic("admin", ADMIN)));
    let r = app
        .req(Method::POST, "/api/v1/projects")
        .json(&json!({"name": "team"}))
        .send()
        .await
        .expect("create project");
    assert_eq!(r.status(), StatusCode::CREATED);
    app
}

async fn api(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.req(method, path);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.expect("API request")
}

/// Creates the account `user` (password `<user>-password`), an admin of project `team`.
async fn add_project_admin(app: &TestApp, user: &str) {
    let password = format!("{user}-password");
    let body = json!({"name": user, "password": password});
    let r = api(app, Method::POST, "/api/v1/users", Some(body)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let path = format!("/api/v1/projects/team/members/{user}");
    let r = api(app, Method::PUT, &path, Some(json!({"role": "admin"}))).await;
    assert!(r.status().is_success());
}

async fn usage(app: &TestApp) -> Value {
    let r = api(app, Method::GET, "/api/v1/projects/team/usage", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("usage")
}

async fn set_quota(app: &TestApp, bytes: Option<u64>) {
    let r = api(
        app,
        Method::PUT,
        "/api/v1/projects/team/quota",
        Some(json!({"quota_bytes": bytes})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// POSTs a whole blob; returns the response.
async fn post_blob(app: &TestApp, repo: &str, data: &[u8]) -> reqwest::Response {
    app.req(
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(data)),
    )
    .header("content-type", "application/octet-stream")
    .body(data.to_vec())
    .send()
    .await
    .expect("POST blob")
}

#[tokio::test]
async fn quotas_count_each_blob_once_and_refuse_what_does_not_fit() {
    let app = start().await;
    set_quota(&app, Some(100_000)).await;
    let big = noise(1, 60_000);
    assert_eq!(
        post_blob(&app, "team/a", &big).await.status(),
        StatusCode::CREATED
    );
    // The same bytes in another repository of the project cost nothing more.
    assert_eq!(
        post_blob(&app, "team/b", &big).await.status(),
        StatusCode::CREATED
    );
    let u = usage(&app).await;
    assert_eq!(
        (u["bytes"].as_u64(), u["blobs"].as_u64()),
        (Some(60_000), Some(1)),
        "{u}"
    );
    assert_eq!(u["quota_bytes"], 100_000);
    let repos = u["repositories"].as_array().expect("repositories");
    assert_eq!(repos.len(), 2);
    assert_eq!(
        (
            repos[0]["unique_bytes"].as_u64(),
            repos[0]["shared_bytes"].as_u64()
        ),
        (Some(0), Some(60_000))
    );

    // 50,000 more does not fit: refused, named, and nothing of it stays.
    let more = noise(2, 50_000);
    let r = post_blob(&app, "team/a", &more).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.expect("error");
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().expect("message");
    for part in [
        "project team",
        "limit 100000 bytes",
        "usage 60000 bytes",
        "50000 more",
    ] {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
    let head = app
        .req(Method::HEAD, &format!("/v2/team/a/blobs/{}", sha256(&more)))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    assert_eq!(usage(&app).await["bytes"], 60_000);
    assert_eq!(metric(&app, "berth_quota_refusals_total").await, 1.0);
    // A mount from another project is a push too.
    let r = api(
        &app,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "other"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        post_blob(&app, "other/x", &more).await.status(),
        StatusCode::CREATED
    );
    let r = app
        .req(
            Method::POST,
            &format!(
                "/v2/team/a/blobs/uploads/?mount={}&from=other/x",
                sha256(&more)
            ),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A manifest counts too, and fits.
    let config = b"{}".to_vec();
    assert_eq!(
        post_blob(&app, "team/a", &config).await.status(),
        StatusCode::CREATED
    );
    let manifest = image_manifest(
        &sha256(&config),
        2,
        &[(&sha256(&big), big.len())],
        None,
        None,
    );
    let r = app
        .put_manifest("team/a", "1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(usage(&app).await["bytes"], 60_002 + manifest.len() as u64);
    // At the limit nothing new starts.
    set_quota(&app, Some(60_002 + manifest.len() as u64)).await;
    let r = app
        .req(Method::POST, "/v2/team/a/blobs/uploads/")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.expect("error");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no room is left for new content"),
        "{message}"
    );
    // No quota: it fits again. Only a system administrator sets quotas.
    set_quota(&app, None).await;
    assert_eq!(
        post_blob(&app, "team/a", &more).await.status(),
        StatusCode::CREATED
    );
    add_project_admin(&app, "bob").await;
    let r = reqwest::Client::new()
        .put(app.url("/api/v1/projects/team/quota"))
        .header("authorization", basic("bob", "bob-password"))
        .json(&json!({"quota_bytes": 1}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A project admin reads the usage.
    let r = reqwest::Client::new()
        .get(app.url("/api/v1/projects/team/usage"))
        .header("authorization", basic("bob", "bob-password"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn immutable_tags_stay_until_a_system_administrator_lifts_the_rule() {
    let app = start().await;
    let r = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/immutable-tags",
        Some(json!({"patterns": ["v*", "release-?"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = api(
        &app,
        Method::GET,
        "/api/v1/projects/team/immutable-tags",
        None,
    )
    .await;
    assert_eq!(
        r.json::<Value>().await.expect("patterns")["patterns"],
        json!(["v*", "release-?"])
    );
    let bad = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/immutable-tags",
        Some(json!({"patterns": ["../x"]})),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let (first, first_digest) = app.push_image("team/app", "v1", "one").await;
    let config = b"{\"two\":2}".to_vec();
    let c = app.push_blob("team/app", &config).await;
    let second = image_manifest(&c, config.len(), &[], None, None);
    let denied = |r: reqwest::Response| async move {
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let body: Value = r.json().await.expect("error");
        assert_eq!(body["errors"][0]["code"], "DENIED", "{body}");
        let message = body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .to_string();
        assert!(message.contains("immutable"), "{message}");
    };
    denied(
        app.put_manifest("team/app", "v1", OCI_MANIFEST, &second)
            .await,
    )
    .await;
    // With ?tag= on a digest PUT too; nothing of a refused PUT stays.
    let by_digest = format!("{}?tag=v1&tag=extra", sha256(&second));
    denied(
        app.put_manifest("team/app", &by_digest, OCI_MANIFEST, &second)
            .await,
    )
    .await;
    let r = app
        .get(&format!("/v2/team/app/manifests/{}", sha256(&second)))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = app.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.bytes().await.expect("body").as_ref(), first.as_slice());
    denied(
        app.req(Method::DELETE, "/v2/team/app/manifests/v1")
            .send()
            .await
            .expect("DELETE"),
    )
    .await;
    denied(
        app.req(
            Method::DELETE,
            &format!("/v2/team/app/manifests/{first_digest}"),
        )
        .send()
        .await
        .expect("DELETE"),
    )
    .await;
    // The same manifest again is no change; tags outside the patterns move freely.
    let r = app
        .put_manifest("team/app", "v1", OCI_MANIFEST, &first)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for body in [&first, &second] {
        let r = app
            .put_manifest("team/app", "latest", OCI_MANIFEST, body)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Only a system administrator lifts the rule; then v1 moves and goes.
    add_project_admin(&app, "carol").await;
    let r = reqwest::Client::new()
        .put(app.url("/api/v1/projects/team/immutable-tags"))
        .header("authorization", basic("carol", "carol-password"))
        .json(&json!({"patterns": []}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/immutable-tags",
        Some(json!({"patterns": []})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .put_manifest("team/app", "v1", OCI_MANIFEST, &second)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .req(Method::DELETE, "/v2/team/app/manifests/v1")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let events: Value = app
        .get("/api/v1/audit?action=project.settings")
        .await
        .json()
        .await
        .expect("audit");
    assert_eq!(events.as_array().map(Vec::len), Some(2), "{events}");
}

/// What the test believes the project holds.
#[derive(Default)]
struct Model {
    /// Repository -> blobs it may read.
    links: BTreeMap<String, BTreeSet<String>>,
    /// Repository -> manifest digest -> (blobs it references, its bytes).
    manifests: BTreeMap<String, BTreeMap<String, (Vec<String>, u64)>>,
    /// Repository -> tag -> manifest digest.
    tags: BTreeMap<String, BTreeMap<String, String>>,
    sizes: BTreeMap<String, u64>,
}

impl Model {
    /// The recount: each blob and each manifest once.
    fn bytes(&self) -> u64 {
        let blobs: BTreeSet<&String> = self.links.values().flatten().collect();
        let manifests: BTreeMap<&String, u64> = self
            .manifests
            .values()
            .flat_map(|m| m.iter().map(|(d, (_, size))| (d, *size)))
            .collect();
        blobs.iter().map(|d| self.sizes[*d]).sum::<u64>() + manifests.values().sum::<u64>()
    }

    /// Garbage collection with no grace, untagged manifests included.
    fn collect(&mut self) {
        for (repo, manifests) in &mut self.manifests {
            let tagged: BTreeSet<&String> = self
                .tags
                .get(repo)
                .map(|t| t.values().collect())
                .unwrap_or_default();
            manifests.retain(|d, _| tagged.contains(d));
        }
        // Links go where no manifest of the repository (left) references the blob, including
        // repositories that never had a manifest (blobs only mounted there).
        for (repo, links) in &mut self.links {
            let used: BTreeSet<&String> = self
                .manifests
                .get(repo)
                .map(|m| m.values().flat_map(|(b, _)| b).collect())
                .unwrap_or_default();
            links.retain(|d| used.contains(d));
        }
    }
}

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[tokio::test]
async fn usage_equals_a_recount_after_every_step() {
    // Its zero-grace collections wait for the clock's next second: this one moves at once.
    let app = start_with_clock(ManualClock::starting_now()).await;
    let seed = std::env::var("BERTH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    eprintln!("seed {seed} (BERTH_TEST_SEED)");
    let mut rng = Lcg(seed);
    let repos = ["team/a", "team/b", "team/c/deep"];
    let pool: Vec<Vec<u8>> = (0..8)
        .map(|i| noise(200 + i, 1_000 + 777 * i as usize))
        .collect();
    let mut model = Model::default();
    for blob in &pool {
        model.sizes.insert(sha256(blob), blob.len() as u64);
    }
    let mut gcs = 0;
    for step in 0..40 {
        let repo = repos[rng.below(repos.len())];
        let action = rng.below(10);
        let what = match action {
            0..=3 => {
                // Push an image of 1-3 pool blobs (the first is its config) under a tag.
                let n = 1 + rng.below(3);
                let blobs: Vec<&Vec<u8>> = (0..n).map(|_| &pool[rng.below(pool.len())]).collect();
                for b in &blobs {
                    app.push_blob(repo, b).await;
                    model
                        .links
                        .entry(repo.into())
                        .or_default()
                        .insert(sha256(b));
                }
                let layers: Vec<(String, usize)> =
                    blobs[1..].iter().map(|b| (sha256(b), b.len())).collect();
                let layer_refs: Vec<(&str, usize)> =
                    layers.iter().map(|(d, s)| (d.as_str(), *s)).collect();
                let manifest =
                    image_manifest(&sha256(blobs[0]), blobs[0].len(), &layer_refs, None, None);
                let tag = format!("t{}", rng.below(4));
                let r = app.put_manifest(repo, &tag, OCI_MANIFEST, &manifest).await;
                assert_eq!(r.status(), StatusCode::CREATED);
                let digest = sha256(&manifest);
                let refs = blobs.iter().map(|b| sha256(b)).collect();
                model
                    .manifests
                    .entry(repo.into())
                    .or_default()
                    .insert(digest.clone(), (refs, manifest.len() as u64));
                model
                    .tags
                    .entry(repo.into())
                    .or_default()
                    .insert(tag.clone(), digest);
                format!("push {repo}:{tag}")
            }
            4 | 5 => {
                // Mount a pool blob from wherever it is linked.
                let blob = &pool[rng.below(pool.len())];
                let d = sha256(blob);
                let Some(from) = model
                    .links
                    .iter()
                    .find(|(_, l)| l.contains(&d))
                    .map(|(r, _)| r.clone())
                else {
                    continue;
                };
                let r = app
                    .req(
                        Method::POST,
                        &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"),
                    )
                    .send()
                    .await
                    .expect("mount");
                assert_eq!(
                    r.status(),
                    StatusCode::CREATED,
                    "mount {d} from {from} to {repo}"
                );
                model
                    .links
                    .entry(repo.into())
                    .or_default()
                    .insert(d.clone());
                format!("mount {d} {from} -> {repo}")
            }
            6 => {
                let Some((tag, _)) = model
                    .tags
                    .get(repo)
                    .and_then(|t| t.iter().next())
                    .map(|(t, d)| (t.clone(), d.clone()))
                else {
                    continue;
                };
                let r = app
                    .req(Method::DELETE, &format!("/v2/{repo}/manifests/{tag}"))
                    .send()
                    .await
                    .expect("DELETE");
                assert_eq!(r.status(), StatusCode::ACCEPTED);
                if let Some(tags) = model.tags.get_mut(repo) {
                    tags.remove(&tag);
                }
                format!("untag {repo}:{tag}")
            }
            7 => {
                let Some(digest) = model
                    .manifests
                    .get(repo)
                    .and_then(|m| m.keys().next())
                    .cloned()
                else {
                    continue;
                };
                let r = app
                    .req(Method::DELETE, &format!("/v2/{repo}/manifests/{digest}"))
                    .send()
                    .await
                    .expect("DELETE");
                assert_eq!(r.status(), StatusCode::ACCEPTED);
                if let Some(manifests) = model.manifests.get_mut(repo) {
                    manifests.remove(&digest);
                }
                if let Some(tags) = model.tags.get_mut(repo) {
                    tags.retain(|_, d| *d != digest);
                }
                format!("delete {repo}@{digest}")
            }
            _ => {
                if gcs == 4 {
                    continue;
                }
                gcs += 1;
                let options = GcOptions {
                    grace: Duration::ZERO,
                    delete_untagged: true,
                    dry_run: false,
                };
                app.app
                    .services()
                    .collect_garbage(&options)
                    .await
                    .expect("gc")
                    .expect("gc ran");
                model.collect();
                "gc".to_string()
            }
        };
        let reported = usage(&app).await;
        assert_eq!(
            reported["bytes"].as_u64(),
            Some(model.bytes()),
            "step {step} ({what}), seed {seed}: {reported}"
        );
        let per_repo: BTreeMap<String, u64> = reported["repositories"]
            .as_array()
            .expect("repositories")
            .iter()
            .map(|r| {
                (
                    r["repository"].as_str().expect("name").to_string(),
                    r["bytes"].as_u64().expect("bytes"),
                )
            })
            .collect();
        for (repo, links) in &model.links {
            let expected: u64 = links.iter().map(|d| model.sizes[d]).sum::<u64>()
                + model
                    .manifests
                    .get(repo)
                    .map(|m| m.values().map(|(_, s)| s).sum::<u64>())
                    .unwrap_or(0);
            assert_eq!(
                per_repo.get(repo).copied().unwrap_or(0),
                expected,
                "step {step} ({what}): {repo}"
            );
        }
    }
    assert!(gcs > 0, "the sequence never collected garbage");
}

async fn tags(app: &TestApp, repo: &str) -> Vec<String> {
    let body: Value = app
        .get(&format!("/v2/{repo}/tags/list"))
        .await
        .json()
        .await
        .expect("tags");
    body["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn retention_deletes_the_tags_no_rule_keeps() {
    let clock = ManualClock::starting_now();
    let (now, day) = (clock.now(), 24 * 60 * 60);
    let app = start_with_clock(clock.clone()).await;
    let mut digests = BTreeMap::new();
    // Each tag pushed that many days ago; 1.1 pulled yesterday.
    for (repo, tag, days) in [
        ("team/web", "old", 400),
        ("team/app", "release-1", 50),
        ("team/app", "1.0", 40),
        ("team/app", "1.1", 30),
        ("team/app", "1.2", 20),
        ("team/app", "1.3", 10),
    ] {
        clock.set(now - days * day);
        let (_, digest) = app.push_image(repo, tag, &format!("{repo}:{tag}")).await;
        digests.insert(tag, digest);
    }
    clock.set(now - day);
    // A pull is recorded (off the request's path: wait for it).
    let r = app.get("/v2/team/app/manifests/1.1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let meta = app.meta().await;
    let recorded = within_10s(|| async {
        let tags = meta.project_tags("team").await.expect("tags");
        tags.iter()
            .any(|t| t.tag.as_str() == "1.1" && t.pulled_at.is_some())
    })
    .await;
    assert!(recorded, "the pull of 1.1 was not recorded within 10 s");
    assert!(
        meta.project_tags("team")
            .await
            .expect("tags")
            .iter()
            .filter(|t| t.pulled_at.is_some())
            .count()
            == 1,
        "only the pulled tag has a pull time"
    );
    clock.set(now);

    let r = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/retention",
        Some(json!({"rules": [{"keep_last": 1, "keep_always": true}]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let policy = json!({"rules": [
        {"repositories": "team/app", "keep_last": 1},
        {"repositories": "team/app", "tags": "release-*", "keep_always": true},
        {"repositories": "team/app", "keep_pulled_within_days": 7}
    ]});
    let r = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/retention",
        Some(policy.clone()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Read back with the defaults filled in.
    let r = api(&app, Method::GET, "/api/v1/projects/team/retention", None).await;
    let mut expected = policy.clone();
    expected["rules"][0]["tags"] = "*".into();
    expected["rules"][2]["tags"] = "*".into();
    assert_eq!(r.json::<Value>().await.expect("policy"), expected);
    let r = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/immutable-tags",
        Some(json!({"patterns": ["1.0"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Dry run: 1.2 would go (1.0 is immutable); nothing changes.
    let r = api(
        &app,
        Method::POST,
        "/api/v1/projects/team/retention/run",
        Some(json!({"dry_run": true})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.expect("report");
    assert_eq!(
        report["deleted"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["deleted"][0]["tag"], "1.2");
    assert_eq!(
        (report["tags"].as_u64(), report["immutable"].as_u64()),
        (Some(6), Some(1))
    );
    assert_eq!(tags(&app, "team/app").await.len(), 5);

    let r = api(
        &app,
        Method::POST,
        "/api/v1/projects/team/retention/run",
        None,
    )
    .await;
    let report: Value = r.json().await.expect("report");
    assert_eq!(
        report["deleted"][0]["digest"],
        digests["1.2"].as_str(),
        "{report}"
    );
    assert_eq!(
        tags(&app, "team/app").await,
        ["1.0", "1.1", "1.3", "release-1"]
    );
    assert_eq!(
        tags(&app, "team/web").await,
        ["old"],
        "no rule covers team/web"
    );
    let events: Value = app
        .get("/api/v1/audit?action=retention.delete")
        .await
        .json()
        .await
        .expect("audit");
    assert_eq!(events.as_array().map(Vec::len), Some(1), "{events}");
    assert_eq!(
        events[0]["resource"],
        format!("team/app:1.2@{}", digests["1.2"])
    );
    assert_eq!(events[0]["project"], "team");
    // The manifest it untagged is garbage collection's.
    let options = GcOptions {
        grace: Duration::ZERO,
        delete_untagged: true,
        dry_run: false,
    };
    let gc = app
        .app
        .services()
        .collect_garbage(&options)
        .await
        .expect("gc")
        .expect("ran");
    assert_eq!(gc.manifests.len(), 1, "{gc:?}");
    assert_eq!(gc.manifests[0].digest.to_string(), digests["1.2"]);
}

#[tokio::test]
async fn concurrent_first_pushes_of_an_immutable_tag_leave_one() {
    let app = start().await;
    let r = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/immutable-tags",
        Some(json!({"patterns": ["v*"]})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let config = app.push_blob("team/race", b"{}").await;
    // Eight different manifests (an annotation apart) for the same new tag.
    let bodies: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            let mut m: Value =
                serde_json::from_slice(&image_manifest(&config, 2, &[], None, None)).expect("json");
            m["annotations"] = json!({"n": i.to_string()});
            serde_json::to_vec(&m).expect("json")
        })
        .collect();
    let pushes = bodies
        .iter()
        .map(|b| app.put_manifest("team/race", "v9", OCI_MANIFEST, b));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(pushes)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();
    let won: Vec<usize> = (0..8)
        .filter(|&i| statuses[i] == StatusCode::CREATED)
        .collect();
    assert_eq!(won.len(), 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::FORBIDDEN)
            .count()
            == 7,
        "{statuses:?}"
    );
    let r = app.get("/v2/team/race/manifests/v9").await;
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        bodies[won[0]].as_slice()
    );
}

#[tokio::test]
async fn retention_runs_on_its_schedule() {
    let clock = ManualClock::starting_now();
    let now = clock.now();
    let mut app = TestApp::start_with_clock(clock.clone(), |c| {
        c.auth.enabled = true;
        c.auth.admin_password = ADMIN.into();
        c.retention.interval_secs = 1;
    })
    .await;
    app.authorize(Some(&basic("admin", ADMIN)));
    let r = api(
        &app,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "team"})),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // a pushed ten days ago, b now.
    for (tag, days) in [("a", 10), ("b", 0)] {
        clock.set(now - days * 24 * 60 * 60);
        app.push_image("team/app", tag, tag).await;
    }
    let policy = json!({"rules": [{"keep_pushed_within_days": 1}]});
    let r = api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/retention",
        Some(policy),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(
        within_10s(|| async { tags(&app, "team/app").await == ["b"] }).await,
        "the scheduled run did not delete the old tag within 10 s: {:?}",
        tags(&app, "team/app").await
    );
    // The run counts what it deleted when it has finished, a moment after the tag went.
    assert!(
        within_10s(|| async { metric(&app, "berth_retention_tags_deleted_total").await >= 1.0 })
            .await,
        "the scheduled run never counted the tag it deleted"
    );
    let events: Value = app
        .get("/api/v1/audit?action=retention.delete")
        .await
        .json()
        .await
        .expect("audit");
    assert_eq!(events[0]["actor"], "retention", "{events}");
}
