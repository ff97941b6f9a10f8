//! `berth gc`: collect garbage now (see `berth_registry::gc`), beside a running `berth serve`
//! or without one.

use std::process::ExitCode;
use std::time::Duration;

use berth_server::gc::{GcOptions, GcReport};

use crate::context::RegistryLocation;
use crate::time_text::{human_duration, human_size};

/// Manifests listed one by one in the text report; the rest are counted.
const LISTED: usize = 20;

/// Options of `berth gc`.
#[derive(clap::Args)]
#[command(
    after_help = "Safe while `berth serve` runs on the same data, on one machine or across \
                  replicas: a push that needs a blob being collected either keeps it or is \
                  refused with MANIFEST_BLOB_UNKNOWN, never left pointing at nothing. One \
                  collection runs at a time (a database lock). Exits 0 when the collection \
                  ran (or, with --dry-run, was reported); 1 when storage refused to delete \
                  some objects (left for `berth fsck --repair`) or on an error; 2 when another \
                  collection is running.\n\n\
                  Examples:\n  berth gc --data-dir /var/lib/berth --dry-run\n  \
                  berth gc --config /etc/berth/replica.toml --delete-untagged --grace 2h"
)]
pub struct Args {
    #[command(flatten)]
    registry: RegistryLocation,
    /// Report what would be deleted; delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Also delete manifests no tag names (not those an index lists, nor a referrer's subject)
    #[arg(long)]
    delete_untagged: bool,
    /// Content younger than this is kept: uploads whose manifest has not come yet, child
    /// manifests pushed before their index
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = crate::time_text::parse_age)]
    grace: u64,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.registry.config()?;
    let options = GcOptions {
        grace: Duration::from_secs(args.grace),
        delete_untagged: args.delete_untagged,
        dry_run: args.dry_run,
    };
    let Some(report) =
        crate::context::runtime()?.block_on(berth_server::gc::gc(&config, &options))?
    else {
        eprintln!(
            "another garbage collection is running (berth serve's schedule, a replica or another berth gc); try later"
        );
        return Ok(ExitCode::from(2));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &options);
    }
    Ok(if report.objects_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(r: &GcReport, options: &GcOptions) {
    let would = if r.dry_run { "would delete" } else { "deleted" };
    let grace = match options.grace.as_secs() {
        0 => "none".to_string(),
        secs => human_duration(secs),
    };
    println!(
        "examined {} manifest(s) and {} blob(s); grace period: {grace}",
        r.manifests_examined, r.blobs_examined
    );
    for m in r.manifests.iter().take(LISTED) {
        println!("{would} manifest {}@{}", m.repository, m.digest);
    }
    if r.manifests.len() > LISTED {
        println!("... and {} more manifest(s)", r.manifests.len() - LISTED);
    }
    println!(
        "{would} {} manifest(s), {} blob link(s), {} blob(s) ({})",
        r.manifests.len(),
        r.links_removed,
        r.blobs_deleted,
        human_size(r.bytes_freed)
    );
    if r.kept_in_use > 0 {
        println!(
            "kept {} item(s) marked garbage that a push took back meanwhile",
            r.kept_in_use
        );
    }
    if r.objects_failed > 0 {
        println!(
            "storage refused to delete {} object(s): their rows are gone; `berth fsck --repair` removes them",
            r.objects_failed
        );
    }
    if !r.dry_run {
        println!(
            "took {:.2}s: {:.0} blobs/s, {:.0} objects/s",
            r.seconds, r.blobs_per_second, r.objects_per_second
        );
    }
}
