use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use berth_client::platform::{Platform, select};
use berth_oci::{Descriptor, ManifestKind, Reference, parse_manifest};
use berth_runtime::containers::Containers;
use berth_runtime::create::{CreateOptions, create};
use berth_runtime::forward::PortMap;
use berth_runtime::runc::Runc;
use berth_runtime::spec::RunOverrides;
use berth_runtime::supervise;
use berth_store::Store;

use crate::commands::pull::pull_and_report;
use crate::context::{ClientContext, TransferFlags, runtime};

/// Run a command in a new container, pulling the image first when it is not local.
///
/// The root filesystem is the image's layers (unpacked once, shared between containers),
/// with overlayfs where the kernel allows it; runc runs the container in its own mount, pid,
/// uts, ipc and network namespaces. Published ports are forwarded by berth to the container's
/// loopback. Needs root and runc (`BERTH_RUNTIME` names another runtime).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth run --rm busybox echo hello\n  berth run -d -p 8080:80 --name web localhost:5000/team/web:0.1\n  berth run --rm -e GREETING=hi --entrypoint /bin/sh IMAGE -c 'echo $GREETING'"
)]
pub struct Args {
    /// Run in the background and print the container ID
    #[arg(short, long)]
    detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// A name for the container [default: a generated one]
    #[arg(long)]
    name: Option<String>,
    /// Publish a container port: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/tcp]
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    publish: Vec<String>,
    /// Set an environment variable: KEY=VALUE, or KEY for this shell's value
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// The working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// The user to run as: NAME|UID[:GROUP|GID]
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Replace the image's entrypoint (and drop its Cmd)
    #[arg(long)]
    entrypoint: Option<String>,
    /// When to pull the image
    #[arg(long, default_value = "missing", value_parser = ["always", "missing", "never"])]
    pull: String,
    /// Platform to run from a multi-platform image, os/arch[/variant] [default: the host's]
    #[arg(long)]
    platform: Option<String>,
    #[command(flatten)]
    transfer: TransferFlags,
    /// NAME[:TAG|@DIGEST]
    image: String,
    /// The command and its arguments [default: the image's]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// docker's exit code when the container could not be run at all.
const CANNOT_RUN: u8 = 125;

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    match run(args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            Ok(ExitCode::from(CANNOT_RUN))
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut ctx = ClientContext::load()?;
    let reference = ctx.reference(&args.image)?.with_default_tag();
    let ports = args
        .publish
        .iter()
        .map(|p| p.parse::<PortMap>())
        .collect::<Result<Vec<_>, _>>()?;
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    // What is missing to run anything is said before any pull.
    Runc::check_root()?;
    let containers = Containers::open(Containers::default_root()?)?;
    let runc = Runc::locate(containers.runc_root())?;
    let store = ctx.store()?;

    let name = reference.to_string();
    let local = store.resolve(&name)?;
    let desc = match (args.pull.as_str(), local) {
        ("never", None) => bail!("No such image: {}", reference.familiar()),
        ("always", _) | (_, None) => {
            if args.pull != "always" {
                eprintln!("Unable to find image '{}' locally", reference.familiar());
            }
            pull_and_report(
                &mut ctx,
                &reference,
                platform.clone(),
                false,
                &args.transfer,
                true,
            )?;
            store
                .resolve(&name)?
                .with_context(|| format!("{} was pulled but is not in the store", reference))?
        }
        (_, Some(desc)) => desc,
    };
    let manifest = image_manifest(&store, &desc, platform.as_ref(), &reference)?;

    let options = CreateOptions {
        name: args.name.clone(),
        ports,
        overrides: RunOverrides {
            entrypoint: args.entrypoint.clone(),
            command: args.command.clone(),
            env: args.env.clone(),
            working_dir: args.workdir.clone(),
            user: args.user.clone(),
        },
        auto_remove: args.rm,
        image: args.image.clone(),
        image_reference: name,
    };
    let container = create(&containers, &store, &manifest, options, &mut |_| {})?;

    if args.detach {
        start_detached(&containers, &container.id)?;
        println!("{}", container.id);
        return Ok(ExitCode::SUCCESS);
    }
    let code = runtime()?.block_on(supervise::run(
        &containers,
        &runc,
        &container.id,
        true,
        &mut |_| {},
    ))?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

/// The image manifest to run: `desc` itself, or from an index the one for `platform` (the
/// host's by default).
fn image_manifest(
    store: &Store,
    desc: &Descriptor,
    platform: Option<&Platform>,
    reference: &Reference,
) -> anyhow::Result<Descriptor> {
    let bytes = store.read_blob(&desc.digest)?;
    let parsed = parse_manifest(Some(&desc.media_type), &bytes)?;
    if parsed.kind == ManifestKind::Image {
        return Ok(desc.clone());
    }
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let present: Vec<Descriptor> = parsed
        .manifests
        .into_iter()
        .filter(|m| store.has_blob(&m.digest))
        .collect();
    select(&wanted, &present).cloned().with_context(|| {
        format!(
            "{} has no image for {wanted} in the local store (pull it with --platform {wanted})",
            reference.familiar()
        )
    })
}

/// Starts the container's supervisor (`berth container-supervise`, in a session of its own)
/// and waits for it to say that the container runs.
fn start_detached(containers: &Containers, id: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the berth binary")?;
    let log_path = containers.dir(id).join("supervisor.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut child = Command::new(exe)
        .arg("container-supervise")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start the container's supervisor")?;
    let stdout = child
        .stdout
        .take()
        .context("no pipe to the container's supervisor")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let line = line.trim_end();
    if line == supervise_started() {
        return Ok(());
    }
    // Without a word, it failed before it could say why; its log says.
    let _ = child.wait();
    match line.strip_prefix("error: ") {
        Some(why) => bail!("{why}"),
        None => bail!(
            "the container's supervisor ended before the container started; see {}",
            log_path.display()
        ),
    }
}

/// What the supervisor prints once the container runs.
pub fn supervise_started() -> &'static str {
    "started"
}
