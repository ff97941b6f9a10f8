//! Starting a container and staying with it until it exits, like docker's shim: the root
//! filesystem mounted, `config.json` written, the ports bound, `runc run` started with the
//! container's output going to its log (and, attached, to this terminal too), the ports
//! forwarded while it runs; then its exit code recorded, the mount undone, and with `--rm` the
//! container removed.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use crate::containers::{Container, Containers, Process, Status};
use crate::create::unix_now;
use crate::error::{Result, RuntimeError};
use crate::forward::{NetnsDialer, bind, forward};
use crate::layers::LayerCache;
use crate::rootfs::{Rootfs, RootfsMode};
use crate::runc::Runc;
use crate::spec::{Bundle, config_json, resolve_user, with_home};

/// How long `runc run` may take to create the container before berth gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// After Ctrl-C (or SIGTERM to the supervisor), how long the container has before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starts container `id` and waits for it. `ready` hears once whether it started (the
/// started record, or why not). With `attach` its output is copied to this process's stdout
/// and stderr as well as to its log. Returns its exit code.
pub async fn run(
    containers: &Containers,
    runc: &Runc,
    id: &str,
    attach: bool,
    ready: &mut dyn FnMut(std::result::Result<&Container, &RuntimeError>),
) -> Result<i32> {
    // Watched from the start: a Ctrl-C as soon as the container's first output shows must
    // reach the container, not end berth.
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(RuntimeError::io("watch", "SIGINT"))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(RuntimeError::io("watch", "SIGTERM"))?;
    let container = containers.find(id)?;
    let bundle = containers.dir(&container.id);
    let rootfs = Rootfs::in_bundle(&bundle);
    let started = start(containers, runc, &container, &rootfs, attach).await;
    let (mut child, pid, listeners, copies) = match started {
        Ok(s) => s,
        Err(e) => {
            let _ = rootfs.unmount();
            let message = e.to_string();
            let _ = containers.update(&container.id, |c| {
                c.state.status = Status::Exited;
                c.state.error = Some(message);
                c.state.exit_code = Some(125);
                c.state.finished_at = Some(unix_now());
            });
            ready(Err(&e));
            if container.auto_remove {
                let _ = containers.remove(&container.id);
            }
            return Err(e);
        }
    };
    let container = containers.update(&container.id, |c| {
        c.state.status = Status::Running;
        c.state.pid = Some(pid);
        c.state.supervisor = Process::current();
        c.state.started_at = Some(unix_now());
        c.state.error = None;
        c.ports = listeners.iter().map(|(_, p)| *p).collect();
    })?;
    ready(Ok(&container));

    let forwarding = async {
        if listeners.is_empty() {
            return std::future::pending().await;
        }
        match NetnsDialer::new(pid) {
            Ok(dialer) => forward(listeners, dialer).await,
            Err(e) => tracing::warn!(error = %e, "ports not forwarded"),
        }
        std::future::pending::<()>().await
    };
    tokio::pin!(forwarding);
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        let deadline = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break status,
            () = &mut forwarding => {}
            _ = interrupt.recv() => {
                if kill_at.is_some() {
                    let _ = runc.kill(&container.id, "KILL");
                } else {
                    if attach {
                        eprintln!("Stopping the container (Ctrl-C again to kill it)");
                    }
                    let _ = runc.kill(&container.id, "TERM");
                    kill_at = Some(tokio::time::Instant::now() + STOP_GRACE);
                }
            }
            _ = terminate.recv() => {
                let _ = runc.kill(&container.id, "TERM");
                kill_at.get_or_insert(tokio::time::Instant::now() + STOP_GRACE);
            }
            () = deadline => {
                let _ = runc.kill(&container.id, "KILL");
                kill_at = None;
            }
        }
    };
    // The last output, unless something the container left behind holds the pipes open.
    for copy in copies {
        let _ = tokio::time::timeout(Duration::from_secs(1), copy).await;
    }
    // runc exits with the container's status, or 128 + the signal that ended it.
    let code = match status {
        Ok(s) => s
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|n| 128 + n))
            .unwrap_or(255),
        Err(e) => {
            tracing::warn!(error = %e, "lost the runtime process");
            255
        }
    };
    finish(containers, runc, &container, &rootfs, code)?;
    Ok(code)
}

/// runc, the container's pid, the bound ports, the tasks copying its output (attached).
type Started = (
    tokio::process::Child,
    u32,
    Vec<(std::net::TcpListener, crate::forward::PortMap)>,
    Vec<tokio::task::JoinHandle<()>>,
);

async fn start(
    containers: &Containers,
    runc: &Runc,
    container: &Container,
    rootfs: &Rootfs,
    attach: bool,
) -> Result<Started> {
    let bundle = containers.dir(&container.id);
    if container.rootfs == RootfsMode::Overlay && !rootfs.is_mounted() {
        let cache = LayerCache::new(containers.layers_root());
        let dirs: Vec<_> = container.layers.iter().map(|c| cache.diff_dir(c)).collect();
        rootfs.mount_overlay(&dirs, &containers.root().join("empty"))?;
    }
    let user = resolve_user(&rootfs.target, &container.process.user)?;
    let hostname = container.short_id().to_string();
    let hosts = bundle.join("hosts");
    let hostname_file = bundle.join("hostname");
    write(
        &hosts,
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        ),
    )?;
    write(&hostname_file, format!("{hostname}\n"))?;
    let config = config_json(&Bundle {
        hostname: &hostname,
        args: container.process.args.clone(),
        env: with_home(container.process.env.clone(), &user.home),
        cwd: container.process.cwd.clone(),
        user: &user,
        rootfs: &rootfs.target,
        hosts_file: &hosts,
        hostname_file: &hostname_file,
        cgroups_path: format!("/berth/{}", container.id),
    });
    write(
        &bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )?;

    let mut ports = container.ports.clone();
    let bound = bind(&mut ports)?;
    let listeners: Vec<_> = bound.into_iter().zip(ports).collect();

    let log_path = containers.log_path(&container.id);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(RuntimeError::io("open", &log_path))?;
    let pid_file = bundle.join("pid");
    let _ = std::fs::remove_file(&pid_file);
    let mut command = runc.run_command(&container.id, &bundle, &pid_file);
    command
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    if attach {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        let err = log
            .try_clone()
            .map_err(RuntimeError::io("open", &log_path))?;
        command.stdout(
            log.try_clone()
                .map_err(RuntimeError::io("open", &log_path))?,
        );
        command.stderr(err);
    }
    let mut child = command
        .spawn()
        .map_err(RuntimeError::io("start", &runc.binary))?;
    let mut copies = Vec::new();
    if let Some(out) = child.stdout.take() {
        copies.push(tokio::spawn(tee(
            out,
            tokio::io::stdout(),
            clone(&log, &log_path)?,
        )));
    }
    if let Some(err) = child.stderr.take() {
        copies.push(tokio::spawn(tee(
            err,
            tokio::io::stderr(),
            clone(&log, &log_path)?,
        )));
    }
    // runc writes the pid file once the container exists, before its process starts.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            return Ok((child, pid, listeners, copies));
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = log_tail(&log_path);
            return Err(RuntimeError::Runtime(format!(
                "runc exited with {status} before the container started{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            )));
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill().await;
            return Err(RuntimeError::Runtime(
                "the container did not start within 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// After the container's process has exited: runc forgets it, the mount goes, the record
/// says how it ended (or, with `--rm`, the container goes).
fn finish(
    containers: &Containers,
    runc: &Runc,
    container: &Container,
    rootfs: &Rootfs,
    code: i32,
) -> Result<()> {
    let _ = runc.delete(&container.id);
    rootfs.unmount()?;
    if container.auto_remove {
        return containers.remove(&container.id);
    }
    containers.update(&container.id, |c| {
        c.state.status = Status::Exited;
        c.state.exit_code = Some(code);
        c.state.finished_at = Some(unix_now());
        c.state.pid = None;
    })?;
    Ok(())
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(RuntimeError::io("write", path))
}

fn clone(log: &File, path: &Path) -> Result<tokio::fs::File> {
    Ok(tokio::fs::File::from_std(
        log.try_clone().map_err(RuntimeError::io("open", path))?,
    ))
}

/// Copies the container's output to the terminal and to its log.
async fn tee(
    mut from: impl AsyncRead + Unpin,
    mut terminal: impl AsyncWrite + Unpin,
    mut log: tokio::fs::File,
) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let _ = log.write_all(&buf[..n]).await;
        let _ = terminal.write_all(&buf[..n]).await;
        let _ = terminal.flush().await;
    }
}

/// The last lines of the log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
}
