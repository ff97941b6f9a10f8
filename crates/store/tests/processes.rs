//! Several berth processes on one store at once: index.json keeps every name, and a blob being
//! written by several processes ends up whole, once.
//!
//! The test binary runs itself as the child processes: a child is this binary run with
//! `--exact <child test>` and `CHILD_ROOT` set; without `CHILD_ROOT` the child tests do nothing.

use std::io::Write as _;
use std::process::{Command, Stdio};

use berth_oci::Digest;
use berth_store::Store;
use berth_store::testing::TestImage;

const ROOT_VAR: &str = "BERTH_STORE_TEST_CHILD_ROOT";
const ID_VAR: &str = "BERTH_STORE_TEST_CHILD_ID";
const CHILDREN: usize = 8;
const NAMES_PER_CHILD: usize = 20;

fn run_children(test: &str, root: &std::path::Path) {
    let exe = std::env::current_exe().expect("current exe");
    let children: Vec<_> = (0..CHILDREN)
        .map(|id| {
            Command::new(&exe)
                .args(["--exact", test, "--test-threads=1"])
                .env(ROOT_VAR, root)
                .env(ID_VAR, id.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a child failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn child_env() -> Option<(Store, usize)> {
    let root = std::env::var_os(ROOT_VAR)?;
    let id = std::env::var(ID_VAR).ok()?.parse().ok()?;
    Some((Store::open(root).expect("open"), id))
}

/// The payload every blob-writing child writes: big enough to take a while in small chunks.
fn payload() -> Vec<u8> {
    (0..(1u32 << 18)).flat_map(|i| i.to_le_bytes()).collect()
}

#[test]
fn child_tagger() {
    let Some((store, id)) = child_env() else {
        return;
    };
    let image = TestImage::build(&store, b"shared").expect("image");
    for i in 0..NAMES_PER_CHILD {
        store
            .tag(
                &format!("localhost:5000/p{id}/img:{i}"),
                image.manifest.clone(),
            )
            .expect("tag");
    }
}

#[test]
fn processes_tagging_at_once_lose_no_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    run_children("child_tagger", store.root());
    let names: std::collections::BTreeSet<String> = store
        .images()
        .expect("images")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names.len(), CHILDREN * NAMES_PER_CHILD);
}

#[test]
fn child_blob_writer() {
    let Some((store, _)) = child_env() else {
        return;
    };
    let data = payload();
    let digest = Digest::sha256_of(&data);
    let mut writer = store
        .begin_blob(&digest, Some(data.len() as u64))
        .expect("begin");
    if writer.already_exists() {
        return;
    }
    // Resumes whatever an earlier writer left, as a Range request would.
    let from = writer.offset() as usize;
    for chunk in data[from..].chunks(64 << 10) {
        writer.write_all(chunk).expect("write");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    writer.commit().expect("commit");
}

#[test]
fn processes_writing_one_blob_at_once_store_it_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    run_children("child_blob_writer", store.root());
    let data = payload();
    let digest = Digest::sha256_of(&data);
    assert_eq!(std::fs::read(store.blob_path(&digest)).expect("blob"), data);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("ingest"))
        .expect("ingest")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
