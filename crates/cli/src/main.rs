//! `berth`: the registry server (`berth serve`) and the client commands (`pull`, `push`,
//! `login`, ...).

mod commands;
mod context;
mod progress_bars;
mod prompt;
mod time_text;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc rather than glibc's malloc. Under a long mixed load (`bench/soak`) glibc keeps
/// the memory freed by tokio's many blocking threads in per-thread arenas, so the server's RSS
/// climbed for 20 minutes with a flat live heap; jemalloc gives freed pages back after a few
/// seconds (bench/README.md, "Soak").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container image registry and client"
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    // A reader that goes away (`berth images | head -1`) ends the command quietly, as in
    // ripgrep: `println!` panics on a closed stdout, so that one panic is neither printed nor
    // reported as a failure.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe(info.payload()) {
            default_hook(info);
        }
    }));
    let cli = Cli::parse();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commands::exec(cli.command))) {
        Ok(Ok(code)) => code,
        Ok(Err(e))
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("berth: {}", error_text(&e));
            ExitCode::FAILURE
        }
        Err(payload) if is_broken_pipe(payload.as_ref()) => ExitCode::SUCCESS,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// The error and its causes, each cause once: an error whose message already quotes its source
/// (`cannot reach R: <reqwest error>`) is not followed by that source again, as `{:#}` would.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let line = cause.to_string();
        if text.contains(&line) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&line);
    }
    text
}

fn is_broken_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    text.is_some_and(|t| t.contains("Broken pipe"))
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[test]
    fn causes_are_not_repeated() {
        let inner = std::io::Error::other("connection refused");
        let outer = anyhow::Error::new(inner).context("cannot reach r: connection refused");
        assert_eq!(error_text(&outer), "cannot reach r: connection refused");
        let plain = anyhow::Error::new(std::io::Error::other("disk full")).context("saving");
        assert_eq!(error_text(&plain), "saving: disk full");
    }
}
