//! distribution-spec "Content discovery": tags, referrers; and the catalog.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn tag_listing_pages_in_lexical_order() {
    let app = TestApp::start().await;
    let (manifest, _) = app.push_image("r", "b", "x").await;
    for tag in ["a", "C", "c", "_d", "a1", "z9"] {
        let r = app.put_manifest("r", tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let all: Value = app.get("/v2/r/tags/list").await.json().await.expect("json");
    assert_eq!(
        all,
        json!({"name": "r", "tags": ["C", "_d", "a", "a1", "b", "c", "z9"]})
    );

    let r = app.get("/v2/r/tags/list?n=3").await;
    assert_eq!(
        header(&r, "link"),
        "</v2/r/tags/list?n=3&last=a>; rel=\"next\""
    );
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["tags"], json!(["C", "_d", "a"]));
    let r = app.get("/v2/r/tags/list?n=3&last=a").await;
    assert!(r.headers().get("link").is_some());
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["tags"], json!(["a1", "b", "c"]));
    let r = app.get("/v2/r/tags/list?n=3&last=c").await;
    assert!(r.headers().get("link").is_none());
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["tags"], json!(["z9"]));
    let page: Value = app
        .get("/v2/r/tags/list?last=b")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["tags"], json!(["c", "z9"]));
    let page: Value = app
        .get("/v2/r/tags/list?n=0")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["tags"], json!([]));

    assert_error(
        app.get("/v2/unknown/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    assert_error(
        app.get("/v2/r/tags/list?n=-1").await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
}

#[tokio::test]
async fn catalog_pages() {
    let app = TestApp::start().await;
    for repo in ["b/x", "a", "c/y/z"] {
        app.push_blob(repo, b"x").await;
    }
    let all: Value = app.get("/v2/_catalog").await.json().await.expect("json");
    assert_eq!(all, json!({"repositories": ["a", "b/x", "c/y/z"]}));
    let r = app.get("/v2/_catalog?n=2").await;
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=2&last=b%2Fx>; rel=\"next\""
    );
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["repositories"], json!(["a", "b/x"]));
    let page: Value = app
        .get("/v2/_catalog?n=2&last=b%2Fx")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["repositories"], json!(["c/y/z"]));
}

#[tokio::test]
async fn referrers() {
    let app = TestApp::start().await;
    let (subject, subject_digest) = app.push_image("r", "v1", "s").await;

    // Empty index for no referrers and for an unknown digest.
    for d in [&subject_digest, &sha256(b"unknown")] {
        let r = app.get(&format!("/v2/r/referrers/{d}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), OCI_INDEX);
        let index: Value = r.json().await.expect("json");
        assert_eq!(
            index,
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        );
    }

    // Artifacts with the empty config descriptor and a subject.
    let empty = app.push_blob("r", b"{}").await;
    let mut pushed = Vec::new();
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let layer = app.push_blob("r", format!("artifact {i}").as_bytes()).await;
        let mut m: Value = serde_json::from_slice(&image_manifest(
            &empty,
            2,
            &[(&layer, 10)],
            Some((&subject_digest, subject.len())),
            Some(at),
        ))
        .expect("json");
        m["config"]["mediaType"] = "application/vnd.oci.empty.v1+json".into();
        let bytes = serde_json::to_vec(&m).expect("json");
        let d = sha256(&bytes);
        let r = app.put_manifest("r", &d, OCI_MANIFEST, &bytes).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "oci-subject"), subject_digest);
        pushed.push((d, bytes.len(), at.to_string()));
    }
    // A referrer whose artifact type comes from its config media type.
    let cfg = app.push_blob("r", b"{\"kind\":\"cfg\"}").await;
    let mut m: Value = serde_json::from_slice(&image_manifest(
        &cfg,
        14,
        &[],
        Some((&subject_digest, subject.len())),
        None,
    ))
    .expect("json");
    m["config"]["mediaType"] = "application/vnd.example.config+json".into();
    let bytes = serde_json::to_vec(&m).expect("json");
    assert_eq!(
        app.put_manifest("r", "cfgref", OCI_MANIFEST, &bytes)
            .await
            .status(),
        StatusCode::CREATED
    );

    let r = app.get(&format!("/v2/r/referrers/{subject_digest}")).await;
    assert!(r.headers().get("oci-filters-applied").is_none());
    let index: Value = r.json().await.expect("json");
    let manifests = index["manifests"].as_array().expect("array");
    assert_eq!(manifests.len(), 3);
    assert_eq!(manifests[0]["digest"], pushed[0].0.as_str());
    assert_eq!(manifests[0]["size"], pushed[0].1);
    assert_eq!(manifests[0]["mediaType"], OCI_MANIFEST);
    assert_eq!(manifests[0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(
        manifests[0]["annotations"]["org.example.kind"],
        "application/vnd.example.sbom"
    );
    assert_eq!(
        manifests[2]["artifactType"],
        "application/vnd.example.config+json"
    );

    let r = app
        .get(&format!(
            "/v2/r/referrers/{subject_digest}?artifactType=application/vnd.example.sig"
        ))
        .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let index: Value = r.json().await.expect("json");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(index["manifests"][0]["digest"], pushed[1].0.as_str());

    assert_error(
        app.get("/v2/r/referrers/sha256:short").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    // Deleting a referrer removes it from the list.
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/v2/r/manifests/{}", pushed[0].0),
        )
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let index: Value = app
        .get(&format!("/v2/r/referrers/{subject_digest}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn index_referrers_and_subjects_not_pushed_yet() {
    let app = TestApp::start().await;
    let (image, image_digest) = app.push_image("r", "v1", "i").await;
    let empty = app.push_blob("r", b"{}").await;
    // A referrer whose subject does not exist (yet).
    let missing_subject = sha256(b"pushed later, or never");
    let mut m: Value = serde_json::from_slice(&image_manifest(
        &empty,
        2,
        &[],
        Some((&missing_subject, 99)),
        Some("application/vnd.example.sig"),
    ))
    .expect("json");
    m["config"]["mediaType"] = "application/vnd.oci.empty.v1+json".into();
    let dangling = serde_json::to_vec(&m).expect("json");
    let r = app
        .put_manifest("r", &sha256(&dangling), OCI_MANIFEST, &dangling)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), missing_subject);
    let index: Value = app
        .get(&format!("/v2/r/referrers/{missing_subject}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(index["manifests"][0]["digest"], sha256(&dangling).as_str());

    // An index as a referrer, with its own artifactType and annotations.
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.food.stand",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&dangling), "size": dangling.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": image.len()},
        "annotations": {"org.opencontainers.conformance.test": "test index"}
    }))
    .expect("json");
    let r = app.put_manifest("r", &sha256(&idx), OCI_INDEX, &idx).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "oci-subject"), image_digest);
    let index: Value = app
        .get(&format!("/v2/r/referrers/{image_digest}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        index["manifests"],
        json!([{
            "mediaType": OCI_INDEX,
            "digest": sha256(&idx),
            "size": idx.len(),
            "artifactType": "application/vnd.food.stand",
            "annotations": {"org.opencontainers.conformance.test": "test index"}
        }])
    );
}
