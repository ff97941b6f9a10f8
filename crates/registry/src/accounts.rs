//! Accounts as the registry uses them: the first administrator, creating accounts, the name
//! rules, and password hashing on threads of its own (checking a login is the access service's,
//! [`crate::access`]).

use berth_meta::{ProjectRecord, UserRecord};
use berth_oci::Repository;

use crate::passwords::{generate_secret, hash_password, verify_password_in};
use crate::{Error, Registry, Result};

/// The first account of an empty registry.
pub const ADMIN_USER: &str = "admin";
/// Basic-auth usernames of robot accounts start with this (as in Harbor): `robot$ci`.
pub const ROBOT_PREFIX: &str = "robot$";

/// Names of the registry's own routes and roles, and the audit log's label for callers
/// without an account: no one but a system administrator may take them for an account or a
/// project (a system administrator may, e.g. `library` for mirrored official images), and no
/// one may name an account `anonymous` ([`ANONYMOUS`]).
pub const RESERVED_NAMES: [&str; 17] = [
    "admin",
    "anonymous",
    "api",
    "auth",
    "berth",
    "library",
    "login",
    "logout",
    "public",
    "registry",
    "robot",
    "root",
    "signup",
    "static",
    "system",
    "ui",
    "v2",
];

/// The actor the audit log names for a caller without an account.
pub const ANONYMOUS: &str = "anonymous";

/// How the first administrator got its password.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// Accounts already existed; nothing was done.
    Existing,
    /// Created with the password given (`BERTH_ADMIN_PASSWORD`).
    Created,
    /// Created with this generated password, to be shown once.
    Generated(String),
}

impl Registry {
    /// On an empty registry, creates the `admin` system administrator with `password`, or with
    /// a generated one that the caller shows once. Never a fixed default password.
    pub async fn bootstrap_admin(&self, password: Option<&str>) -> Result<AdminBootstrap> {
        if self.meta.count_users().await? > 0 {
            return Ok(AdminBootstrap::Existing);
        }
        let (password, outcome) = match password {
            Some(p) if !p.is_empty() => (p.to_string(), AdminBootstrap::Created),
            _ => {
                let p = generate_secret();
                (p.clone(), AdminBootstrap::Generated(p))
            }
        };
        let user = UserRecord {
            id: new_account_id(),
            name: ADMIN_USER.to_string(),
            password_hash: hash(password).await?,
            system_admin: true,
            disabled: false,
            created_at: self.now(),
            token_stamp: 0,
        };
        match self.meta.create_user(&user, None).await {
            Ok(()) => Ok(outcome),
            // Another replica created it first.
            Err(berth_meta::MetaError::Conflict(_)) => Ok(AdminBootstrap::Existing),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates an account and its personal namespace (a project named after it, public or
    /// not), as Docker Hub does: sign-up, where the name must be free of reserved words and
    /// of projects.
    pub async fn create_account(
        &self,
        name: &str,
        password: &str,
        system_admin: bool,
        public_namespace: bool,
    ) -> Result<()> {
        validate_account_name(name)?;
        self.insert_account(name, password, system_admin, Some(public_namespace))
            .await
    }

    /// Creates an account with a new id, and its personal namespace when `namespace` says
    /// whether that is public.
    pub(crate) async fn insert_account(
        &self,
        name: &str,
        password: &str,
        system_admin: bool,
        namespace: Option<bool>,
    ) -> Result<()> {
        let now = self.now();
        let user = UserRecord {
            id: new_account_id(),
            name: name.to_string(),
            password_hash: hash(password.to_string()).await?,
            system_admin,
            disabled: false,
            created_at: now,
            token_stamp: 0,
        };
        let personal = namespace.map(|public| ProjectRecord {
            name: name.to_string(),
            public,
            owner: Some(name.to_string()),
            created_at: now,
        });
        self.meta
            .create_user(&user, personal.as_ref())
            .await
            .map_err(|e| match e {
                berth_meta::MetaError::Conflict(_) => {
                    Error::Invalid(format!("the name {name:?} is taken"))
                }
                other => other.into(),
            })
    }
}

/// An account name is a project name (it becomes the personal namespace): one repository path
/// component, at most 64 characters, and not reserved.
pub fn validate_account_name(name: &str) -> Result<()> {
    validate_name_grammar("account", name)?;
    if RESERVED_NAMES.contains(&name) {
        return Err(reserved(name));
    }
    Ok(())
}

/// Whether `name` is a valid account, robot or project name: one repository path component
/// (lowercase letters, digits and `.`, `_`, `-` between them), at most 64 characters.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 64 && !name.contains('/') && name.parse::<Repository>().is_ok()
}

/// Refuses a name that [`is_valid_name`] does not take; the message shows it escaped and cut.
pub(crate) fn validate_name_grammar(kind: &str, name: &str) -> Result<()> {
    if is_valid_name(name) {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "invalid {kind} name \"{}\": lowercase letters, digits and . _ - between them, at \
         most 64 characters",
        crate::audit::escape_control(&name.chars().take(80).collect::<String>())
    )))
}

/// Passwords have at least 8 characters.
pub fn validate_password(password: &str) -> Result<()> {
    if password.len() < 8 {
        return Err(Error::Invalid(
            "passwords have at least 8 characters".into(),
        ));
    }
    Ok(())
}

pub(crate) fn reserved(name: &str) -> Error {
    Error::Invalid(format!(
        "the name {name:?} is reserved (only a system administrator may use it)"
    ))
}

/// Whether a login name (`robot$name` or an account name) is one an account could have:
/// anything else is refused before a password is checked, a limit counted or a log written.
pub fn is_login_name(username: &str) -> bool {
    is_valid_name(username.strip_prefix(ROBOT_PREFIX).unwrap_or(username))
}

/// A new account id: 128 random bits in hex, never reused.
pub(crate) fn new_account_id() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore as _};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex_lower(&bytes)
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id hash of a random password nobody knows, checked when a username is unknown.
pub(crate) fn dummy_hash() -> Result<String> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let h = hash_password(&generate_secret())?;
    Ok(DUMMY.get_or_init(|| h).clone())
}

/// Password hashing (argon2id: 19 MiB and a core for tens of milliseconds per hash) runs on a
/// few threads of its own, one hash at a time each. On tokio's blocking pool a burst of
/// Basic-auth requests ran one hash per blocking thread, up to 512 at once (right or wrong
/// passwords alike: the login limiter counts a failure only after its hash), and glibc kept
/// what every thread's arena had held: 64 concurrent logins left `berth serve` at 1 GiB of RSS,
/// 160 more (8 at a time) at 3 GiB. Here at most [`hashing_thread_count`] hashes' memory is in
/// use at once, reused by the next; the others wait in the queue, which holds no memory to
/// speak of, and would not finish sooner on more threads than cores.
fn hashing_thread_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    cores.clamp(2, 8)
}

type HashingJob = Box<dyn FnOnce() + Send>;

/// The queue of the hashing threads, started on first use.
fn hashing_queue() -> Result<&'static std::sync::mpsc::Sender<HashingJob>> {
    static QUEUE: std::sync::OnceLock<
        std::result::Result<std::sync::mpsc::Sender<HashingJob>, String>,
    > = std::sync::OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<HashingJob>();
            let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
            for i in 0..hashing_thread_count() {
                let rx = std::sync::Arc::clone(&rx);
                std::thread::Builder::new()
                    .name(format!("berth-hashing-{i}"))
                    .spawn(move || {
                        loop {
                            let job = rx
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .recv();
                            let Ok(job) = job else { return };
                            // A panicking job drops its answer channel; the thread goes on.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    })
                    .map_err(|e| format!("cannot start the password hashing threads: {e}"))?;
            }
            Ok(tx)
        })
        .as_ref()
        .map_err(|e| Error::Internal(e.clone()))
}

/// Runs one argon2 computation on the hashing threads.
async fn on_hashing_thread<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    hashing_queue()?
        .send(Box::new(move || {
            let _ = tx.send(work());
        }))
        .map_err(|_| Error::Internal(format!("{what}: the hashing threads are gone")))?;
    rx.await
        .map_err(|_| Error::Internal(format!("{what} failed")))
}

pub(crate) async fn hash(password: String) -> Result<String> {
    on_hashing_thread("password hashing", move || hash_password(&password)).await?
}

pub(crate) async fn verify(password: &str, stored: String) -> Result<bool> {
    thread_local! {
        /// argon2's memory, allocated once per hashing thread (`verify_password_in`).
        static MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let password = password.to_string();
    on_hashing_thread("password check", move || {
        MEMORY.with_borrow_mut(|memory| verify_password_in(&password, &stored, memory))
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A password check queues behind the hashing threads instead of starting a thread of its
    /// own: with every hashing thread busy, it waits.
    #[tokio::test]
    async fn password_checks_queue_for_the_hashing_threads() {
        let stored = hash_password("pw-12345678").expect("hash");
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = std::sync::Arc::new(std::sync::Mutex::new(held));
        let mut busy = Vec::new();
        for _ in 0..hashing_thread_count() {
            let held = std::sync::Arc::clone(&held);
            busy.push(tokio::spawn(on_hashing_thread("test", move || {
                let _ = held.lock().expect("lock").recv();
            })));
        }
        let mut check = tokio::spawn(async move { verify("pw-12345678", stored).await });
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut check)
                .await
                .is_err(),
            "no argon2 run while every hashing thread is busy"
        );
        for _ in 0..busy.len() {
            release.send(()).expect("release");
        }
        let matched = check.await.expect("join").expect("check");
        assert!(matched, "the check ran once a thread was free");
        for b in busy {
            b.await.expect("join").expect("job");
        }
    }
}
