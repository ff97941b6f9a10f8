//! The request sequence of the OCI conformance suite's content-discovery workflow, with its
//! fixtures: descriptors with unknown fields (`newUnspecifiedField`, `data`), a manifest without
//! `mediaType`, referrers whose artifact type comes from the config or the field, an index
//! referrer, and a referrer whose subject is never pushed. Bodies are streamed without a
//! `Content-Length`, as the suite's Go client sends them. It runs twice: against an open
//! registry, and against one with accounts where the client signs in and follows 401
//! challenges to the token endpoint.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;

const KEY: &str = "org.opencontainers.conformance.test";
const TYPE_A: &str = "application/vnd.nhl.peanut.butter.bagel";
const TYPE_B: &str = "application/vnd.nba.strawberry.jam.croissant";

fn streamed(data: &[u8]) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(7).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// POST, then PUT ?digest= with a streamed body, as the suite pushes every blob.
async fn push(app: &TestApp, data: &[u8]) -> Value {
    let loc = app.open_session("conf/repo").await;
    let digest = sha256(data);
    let url = format!("{loc}?digest={digest}");
    let r = app
        .send(|| {
            app.req(Method::PUT, &url)
                .header("content-type", "application/octet-stream")
                .body(streamed(data))
        })
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    json!({"digest": digest, "size": data.len()})
}

async fn put(
    app: &TestApp,
    reference: &str,
    media_type: &str,
    m: &Value,
) -> (String, reqwest::Response) {
    let bytes = serde_json::to_vec_pretty(m).expect("json");
    let digest = sha256(&bytes);
    let reference = if reference.is_empty() {
        digest.clone()
    } else {
        reference.to_string()
    };
    let path = format!("/v2/conf/repo/manifests/{reference}");
    let r = app
        .send(|| {
            app.req(Method::PUT, &path)
                .header("content-type", media_type)
                .body(streamed(&bytes))
        })
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "{m}");
    (digest, r)
}

fn desc(media_type: &str, blob: &Value) -> Value {
    json!({"mediaType": media_type, "digest": blob["digest"], "size": blob["size"], "newUnspecifiedField": null})
}

fn artifact(
    config: Value,
    layer: Value,
    artifact_type: Option<&str>,
    subject: &Value,
    note: Option<&str>,
) -> Value {
    let mut m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": config, "layers": [layer],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject["digest"], "size": subject["size"]},
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = t.into();
    }
    if let Some(n) = note {
        m["annotations"] = json!({ KEY: n });
    }
    m
}

#[tokio::test]
async fn discovery_workflow_of_the_conformance_suite() {
    discovery_workflow(&TestApp::start().await).await;
}

/// The same workflow against a registry with accounts, signed in as the suite is with
/// `OCI_USERNAME`/`OCI_PASSWORD`: a maintainer of the project (push and delete rights), whose
/// client follows every 401 challenge to the token endpoint, as the suite's client does.
#[tokio::test(flavor = "multi_thread")]
async fn discovery_workflow_of_the_conformance_suite_with_credentials() {
    let mut app = TestApp::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin_password = "admin-secret-1".into();
    })
    .await;
    let registry = app.app.services();
    let admin = berth_registry::Principal::User {
        name: "admin".into(),
        system_admin: true,
    };
    registry
        .create_account("conformance", "conformance-pw-1", false, false)
        .await
        .expect("account");
    registry
        .admin_create_project(&admin, "conf", false)
        .await
        .expect("project");
    registry
        .admin_set_member(&admin, "conf", "conformance", berth_meta::Role::Maintainer)
        .await
        .expect("member");

    // Without credentials the project is closed; the 401 says where tokens come from.
    let r = app.get("/v2/conf/repo/tags/list").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = BearerChallenge::parse(header(&r, "www-authenticate")).expect("challenge");
    assert_eq!(challenge.realm, format!("{}/auth/token", app.base));
    assert_eq!(
        challenge.scope.as_deref(),
        Some("repository:conf/repo:pull")
    );

    app.login("conformance", "conformance-pw-1");
    let r = app.get("/v2/").await;
    assert_eq!(r.status(), StatusCode::OK, "the suite's first request");
    discovery_workflow(&app).await;
}

async fn discovery_workflow(app: &TestApp) {
    let config = br#"{"author":"abcdefghijklmnop","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"\x1f\x8b fake tar.gz layer";
    let empty = push(app, b"{}").await;
    assert_eq!(
        empty["digest"],
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    let ref_a = push(app, b"NHL Peanut Butter on my NHL bagel").await;
    let ref_b = push(app, b"NBA Strawberry Jam on my NBA croissant").await;

    // manifests[4] (the subject) and manifests[3] (a subject never pushed), with unknown fields.
    let image = |author: &str| {
        let c = String::from_utf8_lossy(config).replace("abcdefghijklmnop", author);
        (
            c.clone(),
            json!({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(c.as_bytes()), "size": c.len(), "data": "e30=", "newUnspecifiedField": "aGVsbG8gd29ybGQ="},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(layer), "size": layer.len(), "newUnspecifiedField": null}],
            }),
        )
    };
    let (config4, manifest4) = image("subject4");
    let (_, manifest3) = image("subject3");
    let bytes4 = serde_json::to_vec_pretty(&manifest4).expect("json");
    let subject4 = json!({"digest": sha256(&bytes4), "size": bytes4.len()});
    let bytes3 = serde_json::to_vec_pretty(&manifest3).expect("json");
    let subject3 = json!({"digest": sha256(&bytes3), "size": bytes3.len()});

    let empty_config = desc("application/vnd.oci.empty.v1+json", &empty);
    let a_config = artifact(
        desc(TYPE_A, &ref_a),
        desc("application/vnd.oci.empty.v1+json", &empty),
        None,
        &subject4,
        Some("test config a"),
    );
    let a_layer = artifact(
        empty_config.clone(),
        desc(TYPE_A, &ref_a),
        Some(TYPE_A),
        &subject4,
        Some("test layer a"),
    );
    let (a_config_digest, r) = put(app, "", OCI_MANIFEST, &a_config).await;
    assert_eq!(header(&r, "oci-subject"), subject4["digest"]);
    let (a_layer_digest, r) = put(app, "", OCI_MANIFEST, &a_layer).await;
    assert_eq!(header(&r, "oci-subject"), subject4["digest"]);
    let size = |m: &Value| serde_json::to_vec_pretty(m).expect("json").len();
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": "application/vnd.food.stand",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": a_config_digest, "size": size(&a_config)},
            {"mediaType": OCI_MANIFEST, "digest": a_layer_digest, "size": size(&a_layer)},
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject4["digest"], "size": subject4["size"]},
        "annotations": { KEY: "test index" },
    });
    let (_, r) = put(app, "", OCI_INDEX, &index).await;
    assert_eq!(header(&r, "oci-subject"), subject4["digest"]);

    // Now the subject itself, under tagtest0.
    push(app, config4.as_bytes()).await;
    push(app, layer).await;
    let (digest4, _) = put(app, "tagtest0", OCI_MANIFEST, &manifest4).await;
    assert_eq!(digest4, subject4["digest"].as_str().expect("digest"));

    put(
        app,
        "",
        OCI_MANIFEST,
        &artifact(
            desc(TYPE_B, &ref_b),
            desc("application/vnd.oci.empty.v1+json", &empty),
            None,
            &subject4,
            Some("test config b"),
        ),
    )
    .await;
    put(
        app,
        "",
        OCI_MANIFEST,
        &artifact(
            empty_config.clone(),
            desc(TYPE_B, &ref_b),
            Some(TYPE_B),
            &subject4,
            Some("test layer b"),
        ),
    )
    .await;
    let (c_digest, r) = put(
        app,
        "",
        OCI_MANIFEST,
        &artifact(
            empty_config.clone(),
            desc(TYPE_B, &ref_b),
            Some(TYPE_B),
            &subject3,
            None,
        ),
    )
    .await;
    assert_eq!(header(&r, "oci-subject"), subject3["digest"]);

    // A manifest with no mediaType field and no layers: the Content-Type says what it is.
    let (_, config1) = image("emptylayer");
    let mut empty_layer = config1.clone();
    empty_layer
        .as_object_mut()
        .expect("object")
        .remove("mediaType");
    empty_layer["layers"] = json!([]);
    push(
        app,
        String::from_utf8_lossy(config)
            .replace("abcdefghijklmnop", "emptylayer")
            .as_bytes(),
    )
    .await;
    put(app, "emptylayer", OCI_MANIFEST, &empty_layer).await;

    let r = app
        .get(&format!(
            "/v2/conf/repo/referrers/{}",
            subject4["digest"].as_str().expect("digest")
        ))
        .await;
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    let all: Value = r.json().await.expect("json");
    let list = all["manifests"].as_array().expect("manifests");
    assert_eq!(list.len(), 5, "{all}");
    for d in list {
        let annotations = d["annotations"].as_object().expect("annotations");
        assert_eq!(annotations.len(), 1, "{d}");
        assert!(annotations.contains_key(KEY));
    }
    let r = app
        .get(&format!(
            "/v2/conf/repo/referrers/{}?artifactType={TYPE_A}",
            subject4["digest"].as_str().expect("digest")
        ))
        .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let filtered: Value = r.json().await.expect("json");
    let notes: Vec<&str> = filtered["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|d| d["annotations"][KEY].as_str())
        .collect();
    assert_eq!(notes, ["test config a", "test layer a"]);
    let dangling: Value = app
        .get(&format!(
            "/v2/conf/repo/referrers/{}",
            subject3["digest"].as_str().expect("digest")
        ))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(dangling["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(dangling["manifests"][0]["digest"], c_digest.as_str());

    // Management: tag delete 202, digest delete 202, tag list still 200 and shorter.
    let before: Value = app
        .get("/v2/conf/repo/tags/list")
        .await
        .json()
        .await
        .expect("json");
    let half = before["tags"].as_array().map_or(0, Vec::len) / 2;
    let page: Value = app
        .get(&format!("/v2/conf/repo/tags/list?n={half}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["tags"].as_array().map(Vec::len), Some(half));
    let r = app
        .send(|| app.req(Method::DELETE, "/v2/conf/repo/manifests/tagtest0"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let path = format!("/v2/conf/repo/manifests/{digest4}");
    let r = app.send(|| app.req(Method::DELETE, &path)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = app.get("/v2/conf/repo/tags/list").await;
    assert_eq!(r.status(), StatusCode::OK);
    let after: Value = r.json().await.expect("json");
    assert!(
        after["tags"].as_array().map_or(0, Vec::len)
            < before["tags"].as_array().map_or(0, Vec::len)
    );
    // Blob deletes answer 202, then the blob is gone from the repository.
    let config4_digest = sha256(config4.as_bytes());
    let path = format!("/v2/conf/repo/blobs/{config4_digest}");
    let r = app.send(|| app.req(Method::DELETE, &path)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.get(&format!("/v2/conf/repo/blobs/{config4_digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}
