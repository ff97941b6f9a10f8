//! `berth`: the registry server (`berth serve`) and the client commands (`pull`, `push`,
//! `login`, ...).

mod commands;
mod context;
mod progress_bars;
mod prompt;
mod time_text;

use std::process::ExitCode;

use clap::Parser;

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
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
        Err(payload) if is_broken_pipe(payload.as_ref()) => ExitCode::SUCCESS,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

fn is_broken_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    text.is_some_and(|t| t.contains("Broken pipe"))
}
