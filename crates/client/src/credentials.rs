//! Registry logins kept where docker keeps them, so `berth login` and `docker login` share
//! them: `config.json` (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`) and the
//! credential helpers it names (docker/cli `cli/config/configfile/file.go`,
//! `cli/config/credentials/`, and the docker-credential-helpers protocol).
//!
//! Which store holds a registry's login: the helper in `credHelpers[key]`, else the
//! `credsStore` helper, else `auths[key]` in the file itself, in plaintext. A login kept by a
//! helper still leaves an empty `auths[key] = {}` entry in the file, as docker does.
//!
//! Keys: `docker.io` is `https://index.docker.io/v1/`, every other registry is `host[:port]`
//! (see [`registry_key`]). Older entries keyed with a scheme or a path
//! (`https://host:5000/v1/`) are still found and erased, like docker's `ConvertToHostname`.
//!
//! The whole file is kept as JSON so that keys berth does not know survive a save.

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a helper answers for a server it holds nothing for (docker-credential-helpers
/// `credentials.errCredentialsNotFoundMessage`).
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";
/// The username a helper stores with an identity token instead of a password.
const TOKEN_USERNAME: &str = "<token>";
const HELPER_PREFIX: &str = "docker-credential-";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot find docker's config directory: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigDir,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not valid JSON: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("credential helper {HELPER_PREFIX}{helper} not found in PATH")]
    HelperNotFound { helper: String },
    #[error("cannot run credential helper {HELPER_PREFIX}{helper}: {source}")]
    HelperSpawn {
        helper: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "credential helper {HELPER_PREFIX}{helper} failed to {action} credentials for {server}: {message}"
    )]
    Helper {
        helper: String,
        action: &'static str,
        server: String,
        message: String,
    },
}

pub type Result<T, E = CredentialsError> = std::result::Result<T, E>;

/// A registry login: a username and password, or an identity token (an OAuth2 refresh token
/// the registry's token server gave at login) used instead of the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
    pub identity_token: Option<String>,
}

impl Credential {
    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Credential {
        Credential {
            username: username.into(),
            password: password.into(),
            identity_token: None,
        }
    }

    /// As docker's login stores it: the username is kept, the password dropped.
    pub fn identity_token(username: impl Into<String>, token: impl Into<String>) -> Credential {
        Credential {
            username: username.into(),
            password: String::new(),
            identity_token: Some(token.into()),
        }
    }

    fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.identity_token.as_deref().is_none_or(str::is_empty)
    }
}

/// Secrets stay out of logs.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where [`CredentialStore::store`] put a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    /// In plaintext (base64) in this `config.json`: docker warns about it.
    File(PathBuf),
    /// In the credential helper `docker-credential-<name>`.
    Helper(String),
}

/// The `config.json` key for a registry, as docker writes it: `https://index.docker.io/v1/`
/// for Docker Hub under any of its names, `host[:port]` for the others. Accepts a scheme and a
/// path (`https://host:5000/v2/`), which are dropped.
pub fn registry_key(registry: &str) -> String {
    let host = convert_to_hostname(registry);
    match host {
        berth_oci::DEFAULT_DOMAIN | "index.docker.io" | berth_oci::DEFAULT_REGISTRY_HOST => {
            berth_oci::DEFAULT_CREDENTIALS_KEY.to_string()
        }
        _ => host.to_string(),
    }
}

/// docker's `credentials.ConvertToHostname`: `https://host:5000/v1/` -> `host:5000`.
fn convert_to_hostname(maybe_url: &str) -> &str {
    let rest = maybe_url
        .split_once("://")
        .map_or(maybe_url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}

/// `config.json`, all of it.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    json: Map<String, Value>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> Result<PathBuf> {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(dir) = non_empty("DOCKER_CONFIG") {
            return Ok(PathBuf::from(dir).join("config.json"));
        }
        let home = non_empty("HOME").ok_or(CredentialsError::NoConfigDir)?;
        Ok(PathBuf::from(home).join(".docker").join("config.json"))
    }

    /// A missing or empty file is an empty config.
    pub fn load(path: &Path) -> Result<DockerConfig> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(CredentialsError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let json = if bytes.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            let value: Value =
                serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?;
            match value {
                Value::Object(map) => map,
                Value::Null => Map::new(),
                _ => {
                    return Err(CredentialsError::Invalid {
                        path: path.to_path_buf(),
                        message: "expected a JSON object".into(),
                    });
                }
            }
        };
        let config = DockerConfig {
            path: path.to_path_buf(),
            json,
        };
        config.validate()?;
        Ok(config)
    }

    /// Type errors that docker would refuse the file for, caught once at load.
    fn validate(&self) -> Result<()> {
        let invalid = |message: String| CredentialsError::Invalid {
            path: self.path.clone(),
            message,
        };
        match self.json.get("credsStore") {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => return Err(invalid("\"credsStore\" must be a string".into())),
        }
        match self.json.get("credHelpers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(helpers)) => {
                if let Some((k, _)) = helpers.iter().find(|(_, v)| !v.is_string()) {
                    return Err(invalid(format!("credHelpers[{k:?}] must be a string")));
                }
            }
            Some(_) => return Err(invalid("\"credHelpers\" must be an object".into())),
        }
        match self.json.get("auths") {
            None | Some(Value::Null) => {}
            Some(Value::Object(auths)) => {
                for (k, entry) in auths {
                    let Value::Object(entry) = entry else {
                        return Err(invalid(format!("auths[{k:?}] must be an object")));
                    };
                    for field in ["auth", "username", "password", "identitytoken"] {
                        if entry
                            .get(field)
                            .is_some_and(|v| !v.is_string() && !v.is_null())
                        {
                            return Err(invalid(format!("auths[{k:?}].{field} must be a string")));
                        }
                    }
                }
            }
            Some(_) => return Err(invalid("\"auths\" must be an object".into())),
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole document, including keys berth does not use.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }

    /// The `credsStore` helper name, if set and not empty.
    pub fn creds_store(&self) -> Option<&str> {
        self.json
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `credHelpers[key]`, also under a key spelled with a scheme or path.
    pub fn cred_helper(&self, key: &str) -> Option<&str> {
        let helpers = self.json.get("credHelpers")?.as_object()?;
        let wanted = registry_key(key);
        helpers
            .get(key)
            .or_else(|| {
                helpers
                    .iter()
                    .find(|(k, _)| registry_key(k) == wanted)
                    .map(|(_, v)| v)
            })
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The helper that holds `key`'s login, if any (docker's `getConfiguredCredentialStore`).
    pub fn helper_for(&self, key: &str) -> Option<&str> {
        self.cred_helper(key).or_else(|| self.creds_store())
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.json.get("auths")?.as_object()
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        let auths = self
            .json
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        auths
            .as_object_mut()
            .expect("auths was just made an object")
    }

    /// The `auths` entry for `key`: its own, else the first one keyed with a scheme or path
    /// that names the same registry.
    fn auth_entry(&self, key: &str) -> Option<(&str, &Map<String, Value>)> {
        let auths = self.auths()?;
        if let Some((k, Value::Object(entry))) = auths.get_key_value(key) {
            return Some((k, entry));
        }
        let wanted = registry_key(key);
        auths.iter().find_map(|(k, v)| match v {
            Value::Object(entry) if registry_key(k) == wanted => Some((k.as_str(), entry)),
            _ => None,
        })
    }

    /// The login kept in plaintext in the file for `key`, if any.
    pub fn file_credential(&self, key: &str) -> Result<Option<Credential>> {
        let Some((entry_key, entry)) = self.auth_entry(key) else {
            return Ok(None);
        };
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let auth = field("auth");
        let (username, password) = if auth.is_empty() {
            (field("username"), field("password"))
        } else {
            decode_auth(&auth).ok_or_else(|| CredentialsError::Invalid {
                path: self.path.clone(),
                message: format!("auths[{entry_key:?}].auth is not base64 of \"user:password\""),
            })?
        };
        let token = field("identitytoken");
        let credential = Credential {
            username,
            password,
            identity_token: Some(token).filter(|t| !t.is_empty()),
        };
        Ok(Some(credential).filter(|c| !c.is_empty()))
    }

    /// Sets `auths[key]` as docker writes it: `{"auth": base64("user:pass"), "identitytoken"}`,
    /// or `{}` for a login a helper keeps.
    pub fn set_file_credential(&mut self, key: &str, credential: Option<&Credential>) {
        let mut entry = Map::new();
        if let Some(c) = credential {
            if !c.username.is_empty() || !c.password.is_empty() {
                let auth = BASE64.encode(format!("{}:{}", c.username, c.password));
                entry.insert("auth".into(), Value::String(auth));
            }
            if let Some(token) = c.identity_token.as_ref().filter(|t| !t.is_empty()) {
                entry.insert("identitytoken".into(), Value::String(token.clone()));
            }
        }
        self.auths_mut()
            .insert(key.to_string(), Value::Object(entry));
    }

    /// Removes `auths[key]` and the entries keyed with a scheme or path for the same registry
    /// (docker's `fileStore.Erase`). Whether anything was there.
    pub fn remove_file_credential(&mut self, key: &str) -> bool {
        let wanted = registry_key(key);
        let Some(Value::Object(auths)) = self.json.get_mut("auths") else {
            return false;
        };
        let before = auths.len();
        auths.retain(|k, _| k != key && registry_key(k) != wanted);
        auths.len() != before
    }

    /// Writes the file atomically (a temporary file in the same directory, synced, then
    /// renamed over it), readable by its owner only, creating the directory (0700) if needed.
    /// A symlinked `config.json` stays a symlink: its target is replaced.
    pub fn save(&self) -> Result<()> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CredentialsError::Write { path, source }
        };
        let target = match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::canonicalize(&self.path).map_err(write_err(&self.path))?
            }
            _ => self.path.clone(),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir).map_err(write_err(&dir))?;

        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        self.json
            .serialize(&mut ser)
            .map_err(|e| CredentialsError::Write {
                path: target.clone(),
                source: io::Error::other(e),
            })?;

        let prefix = target
            .file_name()
            .map_or_else(|| "config.json".into(), |n| n.to_os_string());
        let mut tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(&dir)
            .map_err(write_err(&dir))?;
        set_private_mode(tmp.as_file()).map_err(write_err(tmp.path()))?;
        tmp.write_all(&bytes).map_err(write_err(tmp.path()))?;
        tmp.as_file().sync_all().map_err(write_err(tmp.path()))?;
        tmp.persist(&target).map_err(|e| CredentialsError::Write {
            path: target.clone(),
            source: e.error,
        })?;
        // The rename itself is durable once the directory is synced; not all platforms let a
        // directory be opened for that, and the file is already complete either way.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn decode_auth(auth: &str) -> Option<(String, String)> {
    let compact: String = auth.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let decoded = BASE64.decode(compact).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_string(), password.trim_matches('\0').to_string()))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn set_private_mode(file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private_mode(_file: &std::fs::File) -> io::Result<()> {
    Ok(())
}

/// The credential-helper wire format (docker-credential-helpers `credentials.Credentials`).
#[derive(Serialize, Deserialize)]
struct HelperCredentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

struct HelperOutput {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl HelperOutput {
    fn not_found(&self) -> bool {
        [&self.stdout, &self.stderr]
            .iter()
            .any(|s| s.lines().any(|l| l.trim() == NOT_FOUND_MESSAGE))
    }

    fn describe(&self) -> String {
        let mut s = self.status.clone();
        for (name, text) in [("output", &self.stdout), ("stderr", &self.stderr)] {
            let text = text.trim();
            if !text.is_empty() {
                s.push_str(&format!(", {name}: {text}"));
            }
        }
        s
    }
}

/// The logins of one `config.json` and its credential helpers.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    config: DockerConfig,
    /// Where to look for `docker-credential-*`; `None` is `$PATH`.
    helper_path: Option<Vec<PathBuf>>,
}

impl CredentialStore {
    /// docker's own config file (see [`DockerConfig::default_path`]).
    pub fn open_default() -> Result<CredentialStore> {
        CredentialStore::open(&DockerConfig::default_path()?)
    }

    pub fn open(path: &Path) -> Result<CredentialStore> {
        Ok(CredentialStore {
            config: DockerConfig::load(path)?,
            helper_path: None,
        })
    }

    /// Looks for credential helpers in `dirs` instead of `$PATH`.
    pub fn with_helper_path(mut self, dirs: Vec<PathBuf>) -> CredentialStore {
        self.helper_path = Some(dirs);
        self
    }

    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    pub fn path(&self) -> &Path {
        self.config.path()
    }

    /// The login for `key` (see [`registry_key`]), from its helper or the file. A helper that
    /// holds nothing for it gives `None`; the file is not consulted then, as with docker.
    pub fn get(&self, key: &str) -> Result<Option<Credential>> {
        let Some(helper) = self.config.helper_for(key) else {
            return self.config.file_credential(key);
        };
        let out = self.run_helper(helper, "get", key.as_bytes())?;
        if !out.success {
            if out.not_found() {
                return Ok(None);
            }
            return Err(helper_failed(helper, "get", key, &out));
        }
        let answer: HelperCredentials =
            serde_json::from_str(out.stdout.trim()).map_err(|e| CredentialsError::Helper {
                helper: helper.to_string(),
                action: "get",
                server: key.to_string(),
                message: format!("invalid answer ({e}): {}", out.stdout.trim()),
            })?;
        let credential = if answer.username == TOKEN_USERNAME {
            Credential {
                username: String::new(),
                password: String::new(),
                identity_token: Some(answer.secret),
            }
        } else {
            Credential::password(answer.username, answer.secret)
        };
        Ok(Some(credential).filter(|c| !c.is_empty()))
    }

    /// Stores the login for `key` in its helper, or else in plaintext in the file.
    pub fn store(&mut self, key: &str, credential: &Credential) -> Result<StoredIn> {
        // Re-read so a change made since opening (another login) is not lost.
        self.config = DockerConfig::load(self.config.path())?;
        match self.config.helper_for(key).map(str::to_string) {
            Some(helper) => {
                let payload = match credential.identity_token.as_ref().filter(|t| !t.is_empty()) {
                    Some(token) => HelperCredentials {
                        server_url: key.to_string(),
                        username: TOKEN_USERNAME.to_string(),
                        secret: token.clone(),
                    },
                    None => HelperCredentials {
                        server_url: key.to_string(),
                        username: credential.username.clone(),
                        secret: credential.password.clone(),
                    },
                };
                let input = serde_json::to_vec(&payload).map_err(|e| CredentialsError::Helper {
                    helper: helper.clone(),
                    action: "store",
                    server: key.to_string(),
                    message: e.to_string(),
                })?;
                let out = self.run_helper(&helper, "store", &input)?;
                if !out.success {
                    return Err(helper_failed(&helper, "store", key, &out));
                }
                self.config.set_file_credential(key, None);
                self.config.save()?;
                Ok(StoredIn::Helper(helper))
            }
            None => {
                self.config.set_file_credential(key, Some(credential));
                self.config.save()?;
                Ok(StoredIn::File(self.config.path().to_path_buf()))
            }
        }
    }

    /// Removes the login for `key` from its helper and from the file. Whether there was one.
    pub fn erase(&mut self, key: &str) -> Result<bool> {
        self.config = DockerConfig::load(self.config.path())?;
        let mut removed = false;
        if let Some(helper) = self.config.helper_for(key).map(str::to_string) {
            let out = self.run_helper(&helper, "erase", key.as_bytes())?;
            if out.success {
                removed = true;
            } else if !out.not_found() {
                return Err(helper_failed(&helper, "erase", key, &out));
            }
        }
        if self.config.remove_file_credential(key) {
            self.config.save()?;
            removed = true;
        }
        Ok(removed)
    }

    fn find_helper(&self, helper: &str) -> Result<PathBuf> {
        let program = format!("{HELPER_PREFIX}{helper}");
        let not_found = || CredentialsError::HelperNotFound {
            helper: helper.to_string(),
        };
        // A helper name is a suffix, not a path: `credsStore: "../x"` must not escape PATH.
        if helper.is_empty() || helper.contains(['/', '\\']) {
            return Err(not_found());
        }
        let dirs: Vec<PathBuf> = match &self.helper_path {
            Some(dirs) => dirs.clone(),
            None => std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
        };
        dirs.iter()
            .map(|d| d.join(&program))
            .find(|p| is_executable(p))
            .ok_or_else(not_found)
    }

    fn run_helper(&self, helper: &str, action: &'static str, input: &[u8]) -> Result<HelperOutput> {
        let program = self.find_helper(helper)?;
        let spawn_err = |source| CredentialsError::HelperSpawn {
            helper: helper.to_string(),
            source,
        };
        let mut child = Command::new(&program)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its input closes the pipe; its exit status
            // says what went wrong.
            match stdin.write_all(input) {
                Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(spawn_err(e)),
                _ => {}
            }
        }
        let output = child.wait_with_output().map_err(spawn_err)?;
        tracing::debug!(helper, action, status = %output.status, "ran credential helper");
        Ok(HelperOutput {
            success: output.status.success(),
            status: output.status.to_string(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

fn helper_failed(
    helper: &str,
    action: &'static str,
    key: &str,
    out: &HelperOutput,
) -> CredentialsError {
    CredentialsError::Helper {
        helper: helper.to_string(),
        action,
        server: key.to_string(),
        message: out.describe(),
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests;
