use std::process::ExitCode;

use berth_runtime::containers::{Container, Containers, Status};

use crate::time_text::human_duration;

/// List containers (running ones; all with -a).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  berth ps\n  berth ps -a --format json")]
pub struct Args {
    /// Show stopped containers too
    #[arg(short, long)]
    all: bool,
    /// Print only container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Do not shorten IDs and commands
    #[arg(long)]
    no_trunc: bool,
    /// Output format: table, or json (one object per line, like docker)
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let containers = Containers::open(Containers::default_root()?)?;
    let now = now();
    let rows: Vec<Container> = containers
        .list()?
        .into_iter()
        .filter(|c| args.all || c.effective_status() == Status::Running)
        .collect();
    let id = |c: &Container| {
        if args.no_trunc {
            c.id.clone()
        } else {
            c.short_id().to_string()
        }
    };
    if args.quiet {
        for c in &rows {
            println!("{}", id(c));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let lines: Vec<[String; 7]> = rows
        .iter()
        .map(|c| {
            [
                id(c),
                c.image.clone(),
                command_text(&c.process.args, args.no_trunc),
                format!("{} ago", human_duration((now - c.created).max(0) as u64)),
                status_text(c, now),
                ports_text(c),
                c.name.clone(),
            ]
        })
        .collect();
    if args.format == "json" {
        for (c, l) in rows.iter().zip(&lines) {
            let line = serde_json::json!({
                "ID": l[0], "Image": l[1], "Command": l[2], "CreatedAt": c.created,
                "RunningFor": l[3], "Status": l[4], "State": status_word(c),
                "Ports": l[5], "Names": l[6], "ExitCode": c.state.exit_code,
            });
            println!("{line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let print = |cells: &[&str]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    };
    print(&header);
    for l in &lines {
        let cells: Vec<&str> = l.iter().map(String::as_str).collect();
        print(&cells);
    }
    Ok(ExitCode::SUCCESS)
}

/// Published ports, then exposed ones not published, as docker shows them:
/// `127.0.0.1:8080->80/tcp, 443/tcp`.
fn ports_text(c: &Container) -> String {
    let published = c.ports.iter().map(ToString::to_string);
    let unpublished = c.exposed.iter().filter(|e| {
        !c.ports
            .iter()
            .any(|p| e.as_str() == format!("{}/tcp", p.container_port))
    });
    published
        .chain(unpublished.cloned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"httpd -f -p 80"`, cut at 20 characters as docker does.
fn command_text(args: &[String], no_trunc: bool) -> String {
    let joined = args.join(" ");
    if no_trunc || joined.chars().count() <= 20 {
        return format!("\"{joined}\"");
    }
    let cut: String = joined.chars().take(19).collect();
    format!("\"{cut}…\"")
}

fn status_word(c: &Container) -> &'static str {
    match c.effective_status() {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

/// "Up 5 minutes", "Exited (3) 2 seconds ago", "Created".
fn status_text(c: &Container, now: i64) -> String {
    let ago = |t: Option<i64>| human_duration((now - t.unwrap_or(now)).max(0) as u64);
    match c.effective_status() {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", ago(c.state.started_at)),
        Status::Exited => match c.state.exit_code {
            Some(code) => format!("Exited ({code}) {} ago", ago(c.state.finished_at)),
            None => "Exited (unknown)".into(),
        },
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
