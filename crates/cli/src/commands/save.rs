use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use crate::context::ClientContext;

/// Write images to a tar archive that `docker load` and `berth load` read.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  berth save -o web.tar localhost:5000/team/web:0.1 nginx")]
pub struct Args {
    /// NAME[:TAG]...
    #[arg(required = true)]
    names: Vec<String>,
    /// Write to this file instead of standard output
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let store = ctx.store()?;
    let mut images = Vec::new();
    for raw in &args.names {
        let reference = ctx.reference(raw)?.with_default_tag();
        if store.resolve(&reference.to_string())?.is_none() {
            bail!("No such image: {}", reference.familiar());
        }
        images.push((reference.to_string(), reference.familiar()));
    }
    match &args.output {
        Some(path) => {
            // Written beside the target and renamed, so a failed save leaves no half archive.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(".".as_ref());
            // 0666 less the umask, like any file a command creates (a bare temp file is 0600).
            let mut tmp = tempfile::Builder::new()
                .prefix(".berth-save-")
                .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .tempfile_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            store.save(&images, std::io::BufWriter::new(tmp.as_file_mut()))?;
            tmp.as_file().sync_all()?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write a tar archive to a terminal: use -o FILE or redirect");
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            store.save(&images, &mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
