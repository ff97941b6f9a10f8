//! distribution-spec "Pushing manifests", "Pulling manifests", "Deleting manifests".

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn push_and_pull_by_tag_and_digest() {
    let app = TestApp::start().await;
    let (manifest, digest) = app.push_image("team/web", "v1", "a").await;
    for reference in ["v1", digest.as_str()] {
        let r = app
            .get(&format!("/v2/team/web/manifests/{reference}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), digest);
        assert_eq!(
            r.bytes().await.expect("body").to_vec(),
            manifest,
            "exact bytes"
        );
        let r = app
            .head(&format!("/v2/team/web/manifests/{reference}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-length"), manifest.len().to_string());
        assert_eq!(header(&r, "docker-content-digest"), digest);
    }
    assert_error(
        app.get("/v2/team/web/manifests/nope").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_error(
        app.get("/v2/team/web/manifests/.INVALID_MANIFEST_NAME")
            .await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_error(
        app.get("/v2/team/web/manifests/sha256:totallywrong").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    assert_error(
        app.get("/v2/team/nothing/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
    let r = app.head("/v2/team/web/manifests/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn put_by_digest_with_tags_and_location() {
    let app = TestApp::start().await;
    let c = app.push_blob("r", b"{}").await;
    let manifest = image_manifest(&c, 2, &[], None, None);
    let digest = sha256(&manifest);
    let r = app
        .req(
            Method::PUT,
            &format!("/v2/r/manifests/{digest}?tag=one&tag=two"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(header(&r, "location"), format!("/v2/r/manifests/{digest}"));
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let tags: serde_json::Value = app.get("/v2/r/tags/list").await.json().await.expect("json");
    assert_eq!(tags["tags"], json!(["one", "two"]));

    // The digest in the URL must be the content's.
    let other = sha256(b"other");
    let r = app.put_manifest("r", &other, OCI_MANIFEST, &manifest).await;
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn refused_manifests() {
    let app = TestApp::start().await;
    let c = app.push_blob("r", b"{}").await;
    let missing = sha256(b"missing layer");

    let r = app
        .put_manifest(
            "r",
            "t",
            OCI_MANIFEST,
            &image_manifest(&c, 2, &[(&missing, 13)], None, None),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    // A blob of another repository does not count.
    let elsewhere = app.push_blob("other", b"layer elsewhere").await;
    let r = app
        .put_manifest(
            "r",
            "t",
            OCI_MANIFEST,
            &image_manifest(&c, 2, &[(&elsewhere, 15)], None, None),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;

    let r = app
        .put_manifest(
            "r",
            ".bad-tag",
            OCI_MANIFEST,
            &image_manifest(&c, 2, &[], None, None),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
    let r = app.put_manifest("r", "t", OCI_MANIFEST, b"{not json").await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let schema1 =
        json!({"schemaVersion": 1, "name": "r", "tag": "t", "fsLayers": [], "history": []});
    let r = app
        .put_manifest(
            "r",
            "t",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            &serde_json::to_vec(&schema1).expect("json"),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let r = app
        .put_manifest(
            "r",
            "t",
            OCI_MANIFEST,
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;

    // Over the 4 MiB limit, declared or streamed.
    let mut big = image_manifest(&c, 2, &[], None, None);
    big.pop();
    big.extend_from_slice(b",\"annotations\":{\"x\":\"");
    big.extend(std::iter::repeat_n(b'a', 4 << 20));
    big.extend_from_slice(b"\"}}");
    let r = app.put_manifest("r", "big", OCI_MANIFEST, &big).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    let stream = futures_util::stream::iter(
        big.chunks(65536)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = app
        .req(Method::PUT, "/v2/r/manifests/big")
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("PUT");
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_error(
        app.get("/v2/r/manifests/t").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn indexes_and_docker_types() {
    let app = TestApp::start().await;
    let (amd, amd_digest) = app.push_image("multi", "amd64", "amd").await;
    let (arm, arm_digest) = app.push_image("multi", "arm64", "arm").await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd_digest, "size": amd.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm_digest, "size": arm.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ]
    }))
    .expect("json");
    let r = app.put_manifest("multi", "latest", OCI_INDEX, &index).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.get("/v2/multi/manifests/latest").await;
    assert_eq!(header(&r, "content-type"), OCI_INDEX);

    // A child that is not in the repository.
    let missing = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}]
    }))
    .expect("json");
    let r = app
        .put_manifest("multi", "broken", OCI_INDEX, &missing)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.expect("error JSON");
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        body["errors"][0]["message"],
        format!(
            "the index references manifest {}, which is not in this repository",
            sha256(b"nope")
        )
    );
    assert_eq!(body["errors"][0]["detail"]["digest"], sha256(b"nope"));

    // Docker schema 2 and manifest list.
    let cfg = app.push_blob("docker", b"{\"os\":\"linux\"}").await;
    let layer = app.push_blob("docker", b"docker layer").await;
    let docker = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 15},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 12}]
    }))
    .expect("json");
    let r = app
        .put_manifest(
            "docker",
            "v2",
            "application/vnd.docker.distribution.manifest.v2+json",
            &docker,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": sha256(&docker), "size": docker.len(), "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .expect("json");
    let r = app
        .put_manifest(
            "docker",
            "list",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            &list,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.get("/v2/docker/manifests/list").await;
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
}

#[tokio::test]
async fn delete_by_tag_and_by_digest() {
    let app = TestApp::start().await;
    let (_, digest) = app.push_image("r", "v1", "x").await;
    let r = app
        .put_manifest(
            "r",
            "v2",
            OCI_MANIFEST,
            &app.get("/v2/r/manifests/v1")
                .await
                .bytes()
                .await
                .expect("body"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // By tag: only the tag goes.
    let r = app
        .req(Method::DELETE, "/v2/r/manifests/v1")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_error(
        app.get("/v2/r/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        app.get(&format!("/v2/r/manifests/{digest}")).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get("/v2/r/manifests/v2").await.status(), StatusCode::OK);

    // By digest: the manifest and every tag on it.
    let r = app
        .req(Method::DELETE, &format!("/v2/r/manifests/{digest}"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_error(
        app.get(&format!("/v2/r/manifests/{digest}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_error(
        app.get("/v2/r/manifests/v2").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let tags: serde_json::Value = app.get("/v2/r/tags/list").await.json().await.expect("json");
    assert_eq!(tags["tags"], json!([]));
    let r = app
        .req(Method::DELETE, &format!("/v2/r/manifests/{digest}"))
        .send()
        .await
        .expect("DELETE");
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}
