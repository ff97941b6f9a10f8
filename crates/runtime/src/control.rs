//! `berth stop`, `berth rm` and `berth logs` on the records and through runc.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use crate::containers::{Container, Containers, Status};
use crate::create::unix_now;
use crate::error::{Result, RuntimeError};
use crate::rootfs::Rootfs;
use crate::runc::Runc;

/// Stops a running container: SIGTERM, then SIGKILL when it is still running after
/// `grace`. Returns once it has stopped. A container that is not running is left as it is.
pub fn stop(containers: &Containers, runc: &Runc, key: &str, grace: Duration) -> Result<Container> {
    let c = containers.find(key)?;
    if c.state.status != Status::Running {
        return Ok(c);
    }
    if c.effective_status() == Status::Running {
        let _ = runc.kill(&c.id, "TERM");
        if wait_stopped(containers, &c.id, grace)? {
            return found_or(containers, c);
        }
        let _ = runc.kill(&c.id, "KILL");
        if wait_stopped(containers, &c.id, Duration::from_secs(10))? {
            return found_or(containers, c);
        }
    }
    // No supervisor to record the end (killed, or the machine restarted): do its part.
    let _ = runc.kill(&c.id, "KILL");
    let _ = runc.delete(&c.id);
    Rootfs::in_bundle(&containers.dir(&c.id)).unmount()?;
    containers.update(&c.id, |c| {
        c.state.status = Status::Exited;
        c.state.finished_at.get_or_insert(unix_now());
        c.state.pid = None;
        c.state
            .error
            .get_or_insert_with(|| "its supervisor was gone; the exit code is unknown".into());
    })
}

/// The record as it is now; the one given when it has gone (`--rm`).
fn found_or(containers: &Containers, c: Container) -> Result<Container> {
    match containers.find(&c.id) {
        Ok(now) => Ok(now),
        Err(RuntimeError::NoSuchContainer(_)) => Ok(c),
        Err(e) => Err(e),
    }
}

/// Waits until the supervisor has recorded the end (or removed the container); false after
/// `limit`.
fn wait_stopped(containers: &Containers, id: &str, limit: Duration) -> Result<bool> {
    let until = Instant::now() + limit;
    loop {
        match containers.find(id) {
            Err(RuntimeError::NoSuchContainer(_)) => return Ok(true),
            Err(e) => return Err(e),
            Ok(c) if c.state.status != Status::Running => return Ok(true),
            Ok(c) if c.effective_status() != Status::Running => return Ok(false),
            Ok(_) => {}
        }
        if Instant::now() >= until {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes a container; a running one only with `force` (killed first).
pub fn remove(containers: &Containers, runc: &Runc, key: &str, force: bool) -> Result<Container> {
    let c = containers.find(key)?;
    if c.effective_status() == Status::Running {
        if !force {
            return Err(RuntimeError::Running(c.name.clone()));
        }
        let _ = runc.kill(&c.id, "KILL");
        wait_stopped(containers, &c.id, Duration::from_secs(10))?;
    }
    let _ = runc.delete(&c.id);
    Rootfs::in_bundle(&containers.dir(&c.id)).unmount()?;
    containers.remove(&c.id)?;
    Ok(c)
}

/// Writes the container's output so far to `out`; with `follow`, then what comes, until the
/// container has stopped.
pub fn logs(containers: &Containers, key: &str, follow: bool, out: &mut dyn Write) -> Result<()> {
    let c = containers.find(key)?;
    let path = containers.log_path(&c.id);
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => return Ok(()),
        Err(e) => return Err(RuntimeError::io("open", &path)(e)),
    };
    let mut buf = vec![0u8; 64 << 10];
    let mut offset = 0u64;
    loop {
        file.seek(SeekFrom::Start(offset))
            .map_err(RuntimeError::io("read", &path))?;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(RuntimeError::io("read", &path))?;
            if n == 0 {
                break;
            }
            offset += n as u64;
            if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                // The reader went away (`berth logs -f web | head`).
                return Ok(());
            }
        }
        if !follow {
            return Ok(());
        }
        let running = match containers.find(&c.id) {
            Ok(now) => now.effective_status() == Status::Running,
            Err(_) => false,
        };
        if !running {
            // One more read: what it wrote just before it stopped.
            let n = file
                .read(&mut buf)
                .map_err(RuntimeError::io("read", &path))?;
            if n > 0 {
                let _ = out.write_all(&buf[..n]);
                offset += n as u64;
                continue;
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
