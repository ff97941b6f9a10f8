use std::process::ExitCode;

use anyhow::bail;
use berth_client::ClientError;
use berth_client::credentials::{Credential, StoredIn, registry_key};
use berth_client::registry::{Login, RegistryClient};

use crate::context::{ClientContext, runtime};

/// Log in to a registry; the login is stored in docker's config.json (or its credential
/// helper), shared with docker.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth login localhost:5000\n  echo \"$TOKEN\" | berth login -u ci --password-stdin registry.example.com"
)]
pub struct Args {
    /// Registry [default: docker.io, or the client config's default registry]
    server: Option<String>,
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: command lines are visible to other users)
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    /// Allow plain HTTP and unverified TLS to this registry
    #[arg(long)]
    insecure: bool,
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = ClientContext::load()?;
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| ctx.settings.default_registry.clone());
    // `docker login https://index.docker.io/v1/` and `docker login host/` work too.
    let domain = normalize_server(&server);
    let key = registry_key(&domain);

    if args.password.is_some() && args.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let username = crate::prompt::username(args.username.clone(), args.password_stdin, &domain)?;
    let password = match args.password.clone() {
        Some(p) => p,
        None => crate::prompt::password(args.password_stdin)?,
    };

    let mut settings = ctx.settings.clone();
    if args.insecure {
        settings
            .insecure_registries
            .push(berth_oci::registry_host(&domain).to_string());
    }
    let login = Login::Password {
        username: username.clone(),
        password: password.clone(),
    };
    let verified = runtime()?.block_on(async {
        let client = RegistryClient::connect(&domain, &settings, Some(login)).await?;
        client.verify_login().await
    });
    let identity_token = match verified {
        Ok(t) => t,
        Err(ClientError::BadCredentials { .. }) | Err(ClientError::Denied { .. }) => {
            eprintln!("Error response from {domain}: unauthorized: incorrect username or password");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let credential = match identity_token {
        Some(token) => Credential::identity_token(username, token),
        None => Credential::password(username, password),
    };
    match ctx.credentials()?.store(&key, &credential)? {
        StoredIn::File(path) => {
            eprintln!(
                "WARNING! Your password will be stored unencrypted in {}.\n\
                 Configure a credential helper to remove this warning. See\n\
                 https://docs.docker.com/engine/reference/commandline/login/#credential-stores\n",
                path.display()
            );
        }
        StoredIn::Helper(_) => {}
    }
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// `https://host:5000/v1/` -> `host:5000`; `index.docker.io` -> `docker.io`.
fn normalize_server(server: &str) -> String {
    let s = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" => berth_oci::DEFAULT_DOMAIN.to_string(),
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_server;

    #[test]
    fn servers() {
        assert_eq!(normalize_server("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_server("localhost:5000"), "localhost:5000");
        assert_eq!(normalize_server("http://reg.corp:5000/"), "reg.corp:5000");
    }
}
