//! Project quotas, usage, immutable tags and retention with the real binary and skopeo:
//! `berth admin project quota|usage|immutable-tags|retention`, what skopeo sees when a push
//! breaks a rule, and the tags it lists after a retention run.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::harness::{ClientHome, text};

/// `skopeo copy` of the layout's `tag` to `dest`, as the administrator; its output.
fn copy(layout: &Path, tag: &str, dest: &str, policy: &Path) -> std::process::Output {
    Command::new("skopeo")
        .arg("--policy")
        .arg(policy)
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "admin:admin-pw-1",
            &format!("oci:{}:{tag}", layout.display()),
            dest,
        ])
        .output()
        .expect("skopeo runs (./scripts/test installs it)")
}

#[test]
fn quotas_usage_immutable_tags_and_retention_through_the_cli_and_skopeo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[
            ("BERTH_AUTH_ENABLED", "true"),
            ("BERTH_ADMIN_PASSWORD", "admin-pw-1"),
        ],
    );
    let addr = server.addr.as_str();
    let admin = ClientHome::new(&dir.path().join("admin"));
    let out = admin.run_with_stdin(
        &["login", "-u", "admin", "--password-stdin", addr],
        "admin-pw-1",
    );
    assert!(out.status.success(), "{}", text(&out));
    let berth_admin = |args: &[&str]| admin.ok(&[&["admin", "--registry", addr], args].concat());
    berth_admin(&["project", "create", "team"]);

    let source = dir.path().join("layout");
    let mut layout = Layout::new(&source);
    for (seed, tag) in [(1, "one"), (2, "two"), (3, "big")] {
        let size = if tag == "big" { 200_000 } else { 20_000 };
        let image = layout.image(seed, 1, size);
        layout.tag(&image, tag);
    }
    let policy = policy(dir.path());
    let dest = |tag: &str| format!("docker://{addr}/team/app:{tag}");
    let out = copy(&source, "one", &dest("v1"), &policy);
    assert!(out.status.success(), "{}", text(&out));

    let usage = berth_admin(&["project", "usage", "team"]);
    assert!(
        usage.contains("Project team: ") && usage.contains("no quota"),
        "{usage}"
    );
    assert!(
        usage.contains("REPOSITORY") && usage.contains("team/app"),
        "{usage}"
    );

    // Immutable: skopeo cannot move v1, and says why.
    let said = berth_admin(&["project", "immutable-tags", "team", "--set", "v*"]);
    assert!(said.contains("keeps these tags immutable: v*"), "{said}");
    assert_eq!(
        berth_admin(&["project", "immutable-tags", "team"]).trim(),
        "v*"
    );
    let out = copy(&source, "two", &dest("v1"), &policy);
    assert!(!out.status.success());
    assert!(text(&out).contains("immutable"), "{}", text(&out));
    let out = copy(&source, "two", &dest("latest"), &policy);
    assert!(out.status.success(), "{}", text(&out));

    // A quota the big image does not fit in: refused, and skopeo shows the reason.
    let said = berth_admin(&["project", "quota", "team", "100kB"]);
    assert!(said.contains("may now hold 100kB"), "{said}");
    let out = copy(&source, "big", &dest("big"), &policy);
    assert!(!out.status.success());
    assert!(text(&out).contains("quota"), "{}", text(&out));
    let usage = berth_admin(&["project", "usage", "team"]);
    assert!(usage.contains("of a 100kB quota"), "{usage}");
    let json = berth_admin(&["--format", "json", "project", "usage", "team"]);
    let report: serde_json::Value = serde_json::from_str(json.trim()).expect("json usage");
    assert!(
        report["bytes"].as_u64().is_some_and(|b| b < 100_000),
        "{report}"
    );

    // Rules lifted: both pushes go through.
    berth_admin(&["project", "quota", "team", "none"]);
    berth_admin(&["project", "immutable-tags", "team", "--clear"]);
    for (tag, to) in [("two", "v1"), ("big", "big")] {
        let out = copy(&source, tag, &dest(to), &policy);
        assert!(out.status.success(), "{}", text(&out));
    }

    // Retention: keep the v* tags; a dry run lists what would go, the run deletes it, and
    // skopeo sees what is left.
    let said = berth_admin(&[
        "project",
        "retention",
        "team",
        "--set",
        r#"{"rules":[{"tags":"v*","keep_always":true}]}"#,
    ]);
    assert!(
        said.contains("Retention policy of project team set"),
        "{said}"
    );
    let shown = berth_admin(&["project", "retention", "team"]);
    assert!(shown.contains("\"keep_always\": true"), "{shown}");
    let dry = berth_admin(&["project", "retention", "team", "--run", "--dry-run"]);
    for line in [
        "would delete team/app:big",
        "would delete team/app:latest",
        "3 tag(s) looked at, 2 would go",
    ] {
        assert!(dry.contains(line), "{line:?} not in {dry}");
    }
    let run = berth_admin(&["project", "retention", "team", "--run"]);
    assert!(run.contains("2 deleted"), "{run}");
    let out = Command::new("skopeo")
        .args([
            "list-tags",
            "--tls-verify=false",
            "--creds",
            "admin:admin-pw-1",
        ])
        .arg(format!("docker://{addr}/team/app"))
        .output()
        .expect("skopeo list-tags");
    assert!(out.status.success(), "{}", text(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tags json");
    assert_eq!(listed["Tags"], serde_json::json!(["v1"]));
    let said = berth_admin(&["project", "retention", "team", "--clear"]);
    assert!(said.contains("no retention policy"), "{said}");
}
