use super::*;
use crate::testing::{self, TestImage};
use crate::testutil;

#[test]
fn member_paths_cannot_escape() {
    assert_eq!(
        member_path(Path::new("./blobs/sha256/x")).expect("ok"),
        "blobs/sha256/x"
    );
    for bad in ["../x", "/etc/passwd", "blobs/../../x", "a/../b"] {
        assert!(member_path(Path::new(bad)).is_err(), "{bad}");
    }
    assert_eq!(
        resolve_link(Path::new("abc"), Path::new("../def/layer.tar")).expect("ok"),
        "def/layer.tar"
    );
    assert!(resolve_link(Path::new("abc"), Path::new("../../x")).is_err());
    assert!(resolve_link(Path::new(""), Path::new("/etc/passwd")).is_err());
}

#[test]
fn split_tag_ignores_ports_and_digests() {
    assert_eq!(split_tag("nginx:latest"), Some(("nginx", "latest")));
    assert_eq!(
        split_tag("localhost:5000/team/web:0.1"),
        Some(("localhost:5000/team/web", "0.1"))
    );
    assert_eq!(split_tag("localhost:5000/team/web"), None);
    assert_eq!(split_tag("nginx@sha256:abc"), None);
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in entries {
        let mut header = tar_header(tar::EntryType::Regular, bytes.len() as u64);
        // Written raw so that hostile names reach the reader unchanged.
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        tar.append(&header, *bytes).expect("append");
    }
    tar.into_inner().expect("finish")
}

#[test]
fn save_then_load_round_trip() {
    let (_dir, store) = testutil::store();
    let shared = testing::put_layer(&store, b"base").expect("layer");
    let a = TestImage::build_with_layers(&store, b"a", [shared.clone()]).expect("a");
    let b = TestImage::build(&store, b"b").expect("b");
    let multi = testing::put_index(&store, [b.manifest.clone(), testing::absent_manifest()])
        .expect("index");
    store
        .tag("docker.io/library/a:1", a.manifest.clone())
        .expect("tag");
    store
        .tag("localhost:5000/team/b:0.1", multi.clone())
        .expect("tag");

    let mut tar = Vec::new();
    store
        .save(
            &[
                ("docker.io/library/a:1", "a:1"),
                ("localhost:5000/team/b:0.1", "localhost:5000/team/b:0.1"),
            ],
            &mut tar,
        )
        .expect("save");

    // docker's manifest.json and repositories.
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut docs = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        docs.insert(path, bytes);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&docs["manifest.json"]).expect("manifest.json");
    assert_eq!(
        manifest,
        serde_json::json!([
            {
                "Config": blob_member(&a.config.digest),
                "RepoTags": ["a:1"],
                "Layers": [blob_member(&shared.digest), blob_member(&a.layer.digest)],
            },
            {
                "Config": blob_member(&b.config.digest),
                "RepoTags": ["localhost:5000/team/b:0.1"],
                "Layers": [blob_member(&b.layer.digest)],
            },
        ])
    );
    let repositories: serde_json::Value =
        serde_json::from_slice(&docs["repositories"]).expect("repositories");
    assert_eq!(repositories["a"]["1"], a.layer.digest.hex());
    assert_eq!(
        repositories["localhost:5000/team/b"]["0.1"],
        b.layer.digest.hex()
    );
    assert_eq!(docs["oci-layout"], OCI_LAYOUT_CONTENT.as_bytes());
    let index: serde_json::Value = serde_json::from_slice(&docs["index.json"]).expect("index.json");
    assert_eq!(
        index["manifests"][1]["annotations"][IMAGE_NAME_ANNOTATION],
        "localhost:5000/team/b:0.1"
    );
    assert_eq!(
        index["manifests"][1]["annotations"][REF_NAME_ANNOTATION],
        "0.1"
    );

    let (_dir2, other) = testutil::store();
    let mut loaded = other.load(tar.as_slice()).expect("load");
    loaded.sort_by(|x, y| x.names.cmp(&y.names));
    assert_eq!(
        loaded,
        [
            LoadedImage {
                names: vec!["docker.io/library/a:1".into()],
                descriptor: a.manifest.clone(),
            },
            LoadedImage {
                names: vec!["localhost:5000/team/b:0.1".into()],
                descriptor: multi.clone(),
            },
        ]
    );
    for image in &loaded {
        other
            .tag(&image.names[0], image.descriptor.clone())
            .expect("tag");
        assert_eq!(
            other.referenced_blobs(&image.descriptor).expect("walk"),
            store.referenced_blobs(&image.descriptor).expect("walk")
        );
    }
    // Loading again changes nothing.
    assert_eq!(other.load(tar.as_slice()).expect("reload").len(), 2);
}

#[test]
fn loads_legacy_docker_save() {
    let (_dir, store) = testutil::store();
    let layer = testing::layer_tar(b"legacy").expect("layer");
    let layer_id = Digest::sha256_of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_id.to_string()]},
    }))
    .expect("config");
    let config_id = Digest::sha256_of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{}.json", config_id.hex()),
        "RepoTags": ["old:1", "old:alias"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]))
    .expect("manifest");

    // Legacy docker writes a repeated layer once and links the second copy to it.
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, bytes: &[u8]| {
        let mut header = tar_header(tar::EntryType::Regular, bytes.len() as u64);
        tar.append_data(&mut header, path, bytes).expect("append");
    };
    add("aaa/VERSION", b"1.0");
    add("aaa/json", b"{}");
    add("aaa/layer.tar", &layer);
    add(&format!("{}.json", config_id.hex()), &config);
    add("manifest.json", &manifest);
    let mut link = tar_header(tar::EntryType::Symlink, 0);
    tar.append_link(&mut link, "bbb/layer.tar", "../aaa/layer.tar")
        .expect("link");
    let tar = tar.into_inner().expect("finish");

    let loaded = store.load(tar.as_slice()).expect("load");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].names, ["old:1", "old:alias"]);
    store
        .tag("docker.io/library/old:1", loaded[0].descriptor.clone())
        .expect("tag");
    let parsed = store
        .parse_stored_manifest(&loaded[0].descriptor)
        .expect("parse")
        .expect("a manifest");
    assert_eq!(parsed.config.expect("config").digest, config_id);
    assert_eq!(parsed.layers.len(), 2);
    assert!(
        parsed
            .layers
            .iter()
            .all(|l| l.digest == layer_id && l.media_type == OCI_LAYER)
    );
    // Only the three referenced blobs were kept; VERSION and json went with their temps.
    assert_eq!(testutil::blob_files(&store).len(), 3);
    assert!(testutil::ingest_is_empty(&store));
}

#[test]
fn load_refuses_bad_blobs_and_escaping_paths() {
    let (_dir, store) = testutil::store();
    let claimed = Digest::sha256_of(b"the real thing");
    let member = blob_member(&claimed);
    let err = store
        .load(tar_of(&[(&member, b"an impostor")]).as_slice())
        .expect_err("mismatch");
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(testutil::blob_files(&store).is_empty());

    for bad in ["../evil.json", "/abs.json", "blobs/../../x"] {
        let err = store
            .load(tar_of(&[(bad, b"{}")]).as_slice())
            .expect_err(bad);
        assert!(matches!(err, StoreError::Archive(_)), "{bad}: {err}");
    }
    let err = store.load(tar_of(&[("blobs/sha256/../../x", b"{}")]).as_slice());
    assert!(err.is_err());
    let err = store.load(tar_of(&[("hello.txt", b"hi")]).as_slice());
    assert!(matches!(err, Err(StoreError::Archive(_))));
    assert!(testutil::ingest_is_empty(&store));
}

#[test]
fn load_of_incomplete_oci_layout_fails() {
    let (_dir, store) = testutil::store();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [testing::absent_manifest()],
    }))
    .expect("index");
    let err = store
        .load(
            tar_of(&[
                ("oci-layout", OCI_LAYOUT_CONTENT.as_bytes()),
                ("index.json", &index),
            ])
            .as_slice(),
        )
        .expect_err("incomplete");
    assert!(err.to_string().contains("does not hold"), "{err}");
}
