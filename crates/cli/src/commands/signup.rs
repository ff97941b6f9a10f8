use std::process::ExitCode;

use berth_api::Signup;
use berth_client::registry::RegistryClient;

use crate::context::{ClientContext, runtime};

/// Create an account on a registry that allows sign-up (Docker Hub style); it comes with a
/// personal namespace of the same name.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth signup localhost:5000 -u alice\n  echo \"$PW\" | berth signup registry.example.com -u ci --password-stdin --private"
)]
pub struct Args {
    /// The registry [default: the client config's default registry]
    server: Option<String>,
    #[arg(short, long)]
    username: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    /// Make the personal namespace private (it is public by default)
    #[arg(long)]
    private: bool,
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
    let username = crate::prompt::username(args.username.clone(), args.password_stdin, &server)?;
    let password = crate::prompt::password(args.password_stdin)?;
    let mut settings = ctx.settings.clone();
    if args.insecure {
        settings
            .insecure_registries
            .push(berth_oci::registry_host(&server).to_string());
    }
    let signup = Signup {
        name: username.clone(),
        password,
        public: Some(!args.private),
    };
    runtime()?.block_on(async {
        let client = RegistryClient::connect(&server, &settings, None).await?;
        client.signup(&signup).await
    })?;
    let visibility = if args.private { "private" } else { "public" };
    println!("Signed up as {username}; your namespace {server}/{username} is {visibility}.");
    println!("Log in with: berth login {server} -u {username}");
    Ok(ExitCode::SUCCESS)
}
