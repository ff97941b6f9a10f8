//! Interop with real registry clients: skopeo copies generated OCI image layouts into berth
//! and back out, byte-identical; oras (the Python SDK) pushes and pulls an artifact.
//! `scripts/test` installs both; a missing client fails the test, it never skips.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copies_images_in_and_out_byte_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .expect("write");

    let src = dir.path().join("src");
    let mut layout = Layout::new(&src);
    let single = layout.image(1, 1, 2 << 20);
    layout.tag(&single, "single");
    let fifty = layout.image(2, 50, 10_000);
    layout.tag(&fifty, "fifty");
    let index = layout.two_platform_index(3);
    layout.tag(&index, "multi");
    // An artifact whose subject is the single-layer image.
    let artifact = layout.sbom_for(&single);
    layout.tag(&artifact, "sbom");

    let out = dir.path().join("out");
    for (tag, all) in [
        ("single", false),
        ("fifty", false),
        ("multi", true),
        ("sbom", false),
    ] {
        let remote = format!("docker://{}/interop/{tag}:v1", server.addr);
        let from = format!("oci:{}:{tag}", src.display());
        let to = format!("oci:{}:{tag}", out.display());
        let mut copy = vec!["copy", "--preserve-digests"];
        if all {
            copy.push("--all");
        }
        skopeo(
            &[&copy[..], &["--dest-tls-verify=false", &from, &remote]].concat(),
            &policy,
        );
        skopeo(
            &[&copy[..], &["--src-tls-verify=false", &remote, &to]].concat(),
            &policy,
        );
        assert_eq!(
            tagged_digest(&out, tag),
            tagged_digest(&src, tag),
            "{tag} changed on the way"
        );
    }
    // Every blob came back with the same bytes (file names are their digests).
    for entry in std::fs::read_dir(out.join("blobs/sha256"))
        .expect("out blobs")
        .flatten()
    {
        let original =
            std::fs::read(src.join("blobs/sha256").join(entry.file_name())).expect("source has it");
        assert_eq!(std::fs::read(entry.path()).expect("read"), original);
    }
    // The artifact is listed as a referrer of the image.
    let single_digest = single["digest"].as_str().expect("digest");
    let referrers: Value = client()
        .get(format!(
            "{}/v2/interop/sbom/referrers/{single_digest}",
            server.base
        ))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(referrers["manifests"][0]["digest"], artifact["digest"]);
    assert_eq!(
        referrers["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
    // skopeo lists tags through the API too.
    let out = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}/interop/fifty", server.addr),
        ])
        .output()
        .expect("skopeo");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"v1\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn oras_pushes_and_pulls_an_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/scripts/oras_roundtrip.py");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&server.addr)
        .arg("oras/artifact")
        .current_dir(&work)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "oras round trip failed (./scripts/test installs the oras package):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tags: Value = client()
        .get(format!("{}/v2/oras/artifact/tags/list", server.base))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(tags["tags"], json!(["chunked", "v1"]));
}
