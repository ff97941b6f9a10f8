use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use berth_server::{App, Backends, Config, ConfigCheck, ServerTls};
use tracing_subscriber::EnvFilter;

/// Options of `berth serve`. Flags beat `BERTH_*` variables, which beat the config file.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth serve\n  berth serve --listen 127.0.0.1:5000 --data-dir /var/lib/berth\n  berth serve --config berth.toml\n  berth serve --config berth.toml --check-config\n  berth serve --tls-cert /etc/berth/cert.pem --tls-key /etc/berth/key.pem"
)]
pub struct Args {
    /// Address to listen on [default: 0.0.0.0:5000]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Data directory: blobs, uploads and the SQLite database [default: ./berth-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain, leaf first (needs --tls-key)
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, RSA or EC)
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// TOML configuration file
    #[arg(long, value_name = "FILE", env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration and whether the database and blob storage answer, print one
    /// line for each and exit: 0 if all is well, 1 otherwise. Binds nothing; creates,
    /// migrates and changes nothing
    #[arg(long)]
    check_config: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(path) = args.tls_cert {
        config.tls_cert = path_string(path, "--tls-cert")?;
    }
    if let Some(path) = args.tls_key {
        config.tls_key = path_string(path, "--tls-key")?;
    }
    // The documented name of the first administrator's password (also `[auth]
    // admin_password` / `BERTH_AUTH_ADMIN_PASSWORD`).
    if let Ok(password) = std::env::var("BERTH_ADMIN_PASSWORD")
        && config.auth.admin_password.is_empty()
    {
        config.auth.admin_password = password;
    }
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).context("invalid log filter")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.check_config {
        return Ok(runtime.block_on(check_config(&config, args.config.as_deref())));
    }
    runtime.block_on(run(config))?;
    Ok(ExitCode::SUCCESS)
}

/// `--check-config`: the configuration loaded (or the error was already returned), then one
/// line per backend on stdout.
async fn check_config(config: &Config, file: Option<&Path>) -> ExitCode {
    match file {
        Some(file) => println!("config: ok ({})", file.display()),
        None => println!("config: ok (no file: defaults and BERTH_* variables)"),
    }
    let checks = berth_server::check_config(config).await;
    for check in &checks {
        println!("{check}");
    }
    if checks.iter().all(ConfigCheck::is_ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn path_string(path: PathBuf, flag: &str) -> anyhow::Result<String> {
    path.into_os_string()
        .into_string()
        .map_err(|p| anyhow::anyhow!("{flag}: the path {} is not UTF-8", p.display()))
}

async fn run(config: Config) -> anyhow::Result<()> {
    // Before anything is bound or created: a bad certificate or key is a startup error.
    let tls = ServerTls::from_config(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let app = App::open(config).await?;
    let data = where_data_lives(app.config(), app.backends());
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("berth registry listening on {scheme}://{address}, data in {data}");
    let served = app.clone();
    match tls {
        Some(tls) => berth_server::serve_tls(listener, served, tls, shutdown_signal()).await?,
        None => berth_server::serve(listener, served, shutdown_signal()).await?,
    }
    app.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The data directory, or the bucket and database of replicas that keep nothing locally.
fn where_data_lives(config: &Config, backends: &Backends) -> String {
    if backends.uses_data_dir() {
        return config.data_dir.display().to_string();
    }
    format!(
        "bucket {} and {}",
        config.storage.bucket,
        config.database.redacted_url()
    )
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}
