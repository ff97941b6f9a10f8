//! The store is a real OCI image layout: skopeo reads it, and what skopeo writes loads back.
//! skopeo must be installed (`scripts/test` does); a missing skopeo fails, it never skips.

use std::path::Path;
use std::process::Command;

use berth_store::Store;
use berth_store::testing::{TestImage, put_index};

fn skopeo(policy: &Path, args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("--policy")
        .arg(policy)
        .args(args)
        .output()
        .expect("run skopeo (is it installed?)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup() -> (tempfile::TempDir, Store, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .expect("policy");
    let store = Store::open(dir.path().join("store")).expect("open");
    (dir, store, policy)
}

#[test]
fn skopeo_inspects_and_copies_out_of_the_store_and_load_reads_it_back() {
    let (dir, store, policy) = setup();
    let image = TestImage::build(&store, b"tiny").expect("image");
    let name = "localhost:5000/test/tiny:1.0";
    store.tag(name, image.manifest.clone()).expect("tag");
    // A second name for the same manifest, and an unrelated image: skopeo must pick by name.
    store
        .tag("docker.io/library/tiny:latest", image.manifest.clone())
        .expect("tag");
    let other = TestImage::build(&store, b"other").expect("image");
    store
        .tag("docker.io/library/other:1", other.manifest.clone())
        .expect("tag");

    let root = store.root().to_str().expect("utf-8 path");
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(
        &policy,
        &["inspect", &format!("oci:{root}:{name}")],
    ))
    .expect("inspect json");
    assert_eq!(inspect["Digest"], image.manifest.digest.to_string());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"][0], image.layer.digest.to_string());

    // Out as an OCI archive, first without a name, then with a full one.
    let bare = dir.path().join("bare.tar");
    let named = dir.path().join("named.tar");
    skopeo(
        &policy,
        &[
            "copy",
            &format!("oci:{root}:{name}"),
            &format!("oci-archive:{}", bare.display()),
        ],
    );
    skopeo(
        &policy,
        &[
            "copy",
            &format!("oci:{root}:{name}"),
            &format!("oci-archive:{}:docker.io/library/copied:2", named.display()),
        ],
    );

    let other_store = Store::open(dir.path().join("other")).expect("open");
    let file = std::fs::File::open(&bare).expect("open archive");
    let loaded = other_store
        .load(std::io::BufReader::new(file))
        .expect("load");
    assert_eq!(loaded.len(), 1);
    assert!(loaded[0].names.is_empty(), "{:?}", loaded[0].names);
    // skopeo gzips the layer on the way to an OCI destination: same config, new manifest.
    let manifest: serde_json::Value = serde_json::from_slice(
        &other_store
            .read_blob(&loaded[0].descriptor.digest)
            .expect("read"),
    )
    .expect("manifest json");
    assert_eq!(
        manifest["config"]["digest"],
        image.config.digest.to_string()
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let file = std::fs::File::open(&named).expect("open archive");
    let loaded = other_store
        .load(std::io::BufReader::new(file))
        .expect("load");
    assert_eq!(loaded[0].names, ["docker.io/library/copied:2"]);
    other_store
        .tag("docker.io/library/copied:2", loaded[0].descriptor.clone())
        .expect("tag");
    let blobs = other_store
        .referenced_blobs(&loaded[0].descriptor)
        .expect("walk");
    assert_eq!(blobs.len(), 3);
    assert!(blobs.contains(&image.config.digest));
}

#[test]
fn skopeo_reads_save_output_as_oci_and_docker_archives() {
    let (dir, store, policy) = setup();
    let image = TestImage::build(&store, b"saved").expect("image");
    let index = put_index(&store, [image.manifest.clone()]).expect("index");
    store
        .tag("localhost:5000/team/web:0.1", index.clone())
        .expect("tag");

    let tar = dir.path().join("saved.tar");
    let file = std::fs::File::create(&tar).expect("create");
    store
        .save(
            &[("localhost:5000/team/web:0.1", "localhost:5000/team/web:0.1")],
            std::io::BufWriter::new(file),
        )
        .expect("save");
    let tar = tar.to_str().expect("utf-8 path");

    // The OCI side: docker's layout names the entry by its tag.
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(
        &policy,
        &["inspect", "--raw", &format!("oci-archive:{tar}:0.1")],
    ))
    .expect("inspect json");
    assert_eq!(
        inspect["manifests"][0]["digest"],
        image.manifest.digest.to_string()
    );

    // The docker side: manifest.json, as `docker load` reads it.
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(
        &policy,
        &[
            "inspect",
            &format!("docker-archive:{tar}:localhost:5000/team/web:0.1"),
        ],
    ))
    .expect("inspect json");
    assert_eq!(inspect["Layers"][0], image.layer.digest.to_string());
    assert_eq!(inspect["Architecture"], "amd64");
}

#[test]
fn load_reads_skopeo_docker_archives() {
    let (dir, store, policy) = setup();
    let image = TestImage::build(&store, b"legacy").expect("image");
    store
        .tag("docker.io/library/legacy:1", image.manifest.clone())
        .expect("tag");
    let root = store.root().to_str().expect("utf-8 path");
    // The pre-OCI `docker save` form: manifest.json, <hex>.json config, <hex>.tar layers.
    let tar = dir.path().join("docker.tar");
    skopeo(
        &policy,
        &[
            "copy",
            &format!("oci:{root}:docker.io/library/legacy:1"),
            &format!("docker-archive:{}:legacy:1", tar.display()),
        ],
    );

    let other = Store::open(dir.path().join("other")).expect("open");
    let file = std::fs::File::open(&tar).expect("open archive");
    let loaded = other.load(std::io::BufReader::new(file)).expect("load");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].names, ["docker.io/library/legacy:1"]);
    other
        .tag("docker.io/library/legacy:1", loaded[0].descriptor.clone())
        .expect("tag");
    let blobs = other.referenced_blobs(&loaded[0].descriptor).expect("walk");
    assert!(blobs.contains(&image.config.digest));
    assert!(blobs.contains(&image.layer.digest));
}
