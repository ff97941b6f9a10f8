//! `berth fsck`: check that storage holds every blob the database records, and nothing else
//! (see `berth_registry::fsck`).

use std::process::ExitCode;
use std::time::Duration;

use berth_server::fsck::{FsckOptions, FsckReport};

use crate::context::RegistryLocation;
use crate::time_text::{human_duration, human_size};

/// Options of `berth fsck`.
#[derive(clap::Args)]
#[command(
    after_help = "Reads, and writes nothing but the removal of orphans with --repair: safe \
                  while `berth serve` runs on the same data. Exits 0 when every recorded blob \
                  is in storage with its size (and, with --verify-digests, its digest) and \
                  every stored object is recorded (or, with --repair, its orphans were \
                  removed); 1 with a report otherwise.\n\n\
                  Examples:\n  berth fsck --data-dir /var/lib/berth\n  \
                  berth fsck --config /etc/berth/replica.toml --verify-digests --json"
)]
pub struct Args {
    #[command(flatten)]
    registry: RegistryLocation,
    /// Re-hash every blob (reads every byte)
    #[arg(long)]
    verify_digests: bool,
    /// Stored objects younger than this, not yet recorded, are uploads being committed: not
    /// reported as orphans
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::time_text::parse_age)]
    grace: u64,
    /// Remove orphans: stored objects no blob row records (left by a crash between an
    /// upload's commit and its row, or by a collection whose delete failed), after checking
    /// again that no upload is committing to them
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.registry.config()?;
    let options = FsckOptions {
        verify_digests: args.verify_digests,
        grace: Duration::from_secs(args.grace),
        repair: args.repair,
    };
    let report =
        crate::context::runtime()?.block_on(berth_server::fsck::fsck(&config, &options))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &options);
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(r: &FsckReport, options: &FsckOptions) {
    let verified = if options.verify_digests {
        format!(", {} re-hashed", r.verified)
    } else {
        String::new()
    };
    println!(
        "blobs: {} recorded ({}){verified}",
        r.blobs,
        human_size(r.bytes)
    );
    for f in &r.faults {
        println!("fault: {} at {}: {}", f.digest, f.key, f.problem);
    }
    for o in &r.orphans {
        println!(
            "orphan: {} ({}), recorded by no blob",
            o.key,
            human_size(o.size)
        );
    }
    if r.recent > 0 {
        println!(
            "{} unrecorded object(s) younger than {}: uploads being committed, not counted",
            r.recent,
            human_duration(options.grace.as_secs())
        );
    }
    for u in &r.usage_faults {
        println!(
            "usage fault: project {} reports {} bytes, its repositories hold {}",
            u.project, u.reported, u.recount
        );
    }
    println!(
        "usage: {} project(s) recounted, {}",
        r.projects,
        if r.usage_faults.is_empty() {
            "every one as reported".to_string()
        } else {
            format!("{} differ", r.usage_faults.len())
        }
    );
    if options.repair && !r.orphans.is_empty() {
        println!("removed {} orphan(s), kept {}", r.removed, r.kept);
    }
    if r.is_clean() {
        println!("clean");
    } else {
        println!("{} fault(s), {} orphan(s)", r.faults.len(), r.orphans.len());
    }
}
