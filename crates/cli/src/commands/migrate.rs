//! `berth migrate`: copy a registry to other backends (see `berth_server::migrate`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use berth_server::Config;
use berth_server::migrate::{Progress, Report, SigningKey, Tally, migrate};

/// Options of `berth migrate`.
#[derive(clap::Args)]
#[command(
    after_help = "Copies accounts, the token signing key, blobs, manifests and tags; skips what \
                  the target has, so running it again finishes an interrupted copy. Stop the \
                  source registry first (or accept that later pushes are not copied).\n\n\
                  Examples:\n  berth migrate --from-data-dir /var/lib/berth --to scaled.toml\n  \
                  berth migrate --from scaled.toml --to-data-dir /var/lib/berth-copy"
)]
pub struct Args {
    /// The source registry's configuration file ([storage], [database], data_dir)
    #[arg(long, value_name = "FILE", required_unless_present = "from_data_dir")]
    from: Option<PathBuf>,
    /// The source is the embedded registry (filesystem + SQLite) in this data directory
    #[arg(long, value_name = "DIR", conflicts_with = "from")]
    from_data_dir: Option<PathBuf>,
    /// The target registry's configuration file
    #[arg(long, value_name = "FILE", required_unless_present = "to_data_dir")]
    to: Option<PathBuf>,
    /// The target is an embedded registry in this data directory (created if missing)
    #[arg(long, value_name = "DIR", conflicts_with = "to")]
    to_data_dir: Option<PathBuf>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// A side's configuration: its file (without `BERTH_*` variables, which could only name one
/// of the two sides), or the embedded defaults in a data directory.
fn side(file: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Config> {
    match (file, data_dir) {
        (Some(file), _) => Ok(Config::load(Some(file), std::iter::empty())?),
        (None, Some(dir)) => Ok(Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        }),
        (None, None) => {
            anyhow::bail!("name both sides: --from/--from-data-dir and --to/--to-data-dir")
        }
    }
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let from = side(args.from.as_deref(), args.from_data_dir.as_deref())?;
    let to = side(args.to.as_deref(), args.to_data_dir.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut on_progress = |p: Progress<'_>| match p {
        Progress::Step(step) => eprintln!("==> {step}"),
        Progress::Blob { digest, size } => eprintln!("copied blob {digest} ({size} bytes)"),
    };
    let report = runtime
        .block_on(migrate(&from, &to, &mut on_progress))
        .context("migration failed; run the same command again to finish it")?;
    if report.signing_key == SigningKey::Differs {
        eprintln!(
            "warning: the target has a token signing key of its own and keeps it: tokens issued \
             by the source are not valid on the target (clients log in again)"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report) {
    let line =
        |name: &str, t: Tally| println!("{name}: {} copied, {} already there", t.copied, t.present);
    line("users", r.users);
    line("projects", r.projects);
    line("members", r.members);
    line("robots", r.robots);
    let key = match r.signing_key {
        SigningKey::None => "none in the source",
        SigningKey::Copied => "copied",
        SigningKey::Present => "already there",
        SigningKey::Differs => "the target keeps its own",
    };
    println!("signing key: {key}");
    println!(
        "blobs: {} copied ({} bytes), {} already there, {} unreferenced left behind",
        r.blobs.copied, r.blob_bytes, r.blobs.present, r.unreferenced_blobs
    );
    line("blob links", r.links);
    line("manifests", r.manifests);
    line("tags", r.tags);
    if r.copied_nothing() {
        println!("nothing to copy: the target has everything");
    }
}
