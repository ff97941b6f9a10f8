use std::process::ExitCode;

use berth_client::local;
use berth_oci::Reference;

use crate::context::ClientContext;
use crate::progress_bars::short_id;
use crate::time_text::{human_size, since};

/// List the images in the local store.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth images\n  berth images --digests localhost:5000/team/web\n  berth images --format json"
)]
pub struct Args {
    /// Only images of this repository (NAME, e.g. nginx or localhost:5000/team/web)
    repository: Option<String>,
    /// Show the manifest digests
    #[arg(long)]
    digests: bool,
    /// Output format: table, or json (one object per line, like docker)
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Print only image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Show full image IDs
    #[arg(long)]
    no_trunc: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let filter = match &args.repository {
        Some(r) => Some(ctx.reference(r)?.name()),
        None => None,
    };
    let store = ctx.store()?;
    let mut rows = Vec::new();
    for image in store.images()? {
        let Ok(name) = Reference::parse_normalized(&image.name) else {
            continue;
        };
        if filter.as_ref().is_some_and(|f| *f != name.name()) {
            continue;
        }
        let summary = local::details(&store, &image.descriptor)?.summary;
        rows.push((name, summary));
    }
    rows.sort_by(|a, b| {
        (a.0.familiar_name(), b.1.created.clone()).cmp(&(b.0.familiar_name(), a.1.created.clone()))
    });
    let id_text = |d: &berth_oci::Digest| {
        if args.no_trunc {
            d.to_string()
        } else {
            short_id(d)
        }
    };
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for (_, s) in &rows {
            if seen.insert(s.id.clone()) {
                println!("{}", id_text(&s.id));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.format == "json" {
        for (name, s) in &rows {
            let line = serde_json::json!({
                "Repository": name.familiar_name(),
                "Tag": name.tag().map_or("<none>".to_string(), |t| t.to_string()),
                "ID": id_text(&s.id),
                "Digest": s.manifest_digest.to_string(),
                "CreatedAt": s.created,
                "CreatedSince": s.created.as_deref().map(since).unwrap_or_default(),
                "Size": human_size(s.size),
                "SizeBytes": s.size,
                "Name": name.to_string(),
            });
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![{
        let mut h = vec!["REPOSITORY", "TAG"];
        if args.digests {
            h.push("DIGEST");
        }
        h.extend(["IMAGE ID", "CREATED", "SIZE"]);
        h.into_iter().map(str::to_string).collect::<Vec<_>>()
    }];
    for (name, s) in &rows {
        let mut row = vec![
            name.familiar_name(),
            name.tag().map_or("<none>".to_string(), |t| t.to_string()),
        ];
        if args.digests {
            row.push(s.manifest_digest.to_string());
        }
        row.push(id_text(&s.id));
        row.push(
            s.created
                .as_deref()
                .map(since)
                .unwrap_or_else(|| "N/A".into()),
        );
        row.push(human_size(s.size));
        table.push(row);
    }
    print_table(&table);
    Ok(ExitCode::SUCCESS)
}

/// Prints `rows` (the first is the heading) in columns padded to their widest cell plus three
/// spaces, as docker aligns them. Cells may come from a
/// registry or a request (a failed login's user name in the audit log): control characters
/// are written out (`\n`, `\x1b`), so no cell can start a row or send an escape sequence.
pub fn print_table(rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| berth_oci::text::escape_control(c))
                .collect()
        })
        .collect();
    let rows = rows.as_slice();
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}
