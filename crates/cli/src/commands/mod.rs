//! One module per subcommand: its arguments and an `exec` that calls the libraries.

mod admin;
mod container_supervise;
mod fsck;
mod gc;
mod images;
mod inspect;
mod load;
mod login;
mod logout;
mod logs;
mod migrate;
mod ps;
mod pull;
mod push;
mod rm;
mod rmi;
mod run;
mod save;
mod serve;
mod signup;
mod stop;
mod tag;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run the registry server (OCI Distribution v1.1).
    Serve(serve::Args),
    /// Log in to a registry.
    Login(login::Args),
    /// Log out from a registry.
    Logout(logout::Args),
    /// Download an image from a registry.
    Pull(pull::Args),
    /// Upload an image to a registry.
    Push(push::Args),
    /// Give a local image another name.
    Tag(tag::Args),
    /// List local images.
    Images(images::Args),
    /// Remove local images (same as `image rm`).
    Rmi(rmi::Args),
    /// Show an image's manifest, config and layers.
    Inspect(inspect::Args),
    /// Write images to a tar archive.
    Save(save::Args),
    /// Load images from a tar archive.
    Load(load::Args),
    /// Manage local images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage a registry's users, projects, members and robot accounts.
    Admin(admin::Args),
    /// Create an account on a registry that allows sign-up.
    Signup(signup::Args),
    /// Copy a registry (accounts, blobs, manifests, tags) to other backends, resumably.
    Migrate(migrate::Args),
    /// Check that storage holds every blob the registry's database records, and nothing else.
    Fsck(fsck::Args),
    /// Delete blobs and (optionally) untagged manifests nothing references, online.
    Gc(gc::Args),
    /// Run a command in a new container (pulls the image when it is not local).
    Run(run::Args),
    /// List containers.
    Ps(ps::Args),
    /// Stop running containers.
    Stop(stop::Args),
    /// Remove containers.
    Rm(rm::Args),
    /// Show a container's output.
    Logs(logs::Args),
    /// Supervise a detached container (used by `berth run -d`).
    #[command(hide = true)]
    ContainerSupervise(container_supervise::Args),
}

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// List local images.
    #[command(alias = "list")]
    Ls(images::Args),
    /// Remove local images.
    #[command(alias = "remove")]
    Rm(rmi::Args),
    /// Show an image's manifest, config and layers.
    Inspect(inspect::Args),
    /// Download an image from a registry.
    Pull(pull::Args),
    /// Upload an image to a registry.
    Push(push::Args),
    /// Give a local image another name.
    Tag(tag::Args),
    /// Write images to a tar archive.
    Save(save::Args),
    /// Load images from a tar archive.
    Load(load::Args),
}

pub fn exec(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => serve::exec(args),
        Command::Admin(args) => admin::exec(args),
        Command::Signup(args) => signup::exec(args),
        Command::Migrate(args) => migrate::exec(args),
        Command::Fsck(args) => fsck::exec(args),
        Command::Gc(args) => gc::exec(args),
        Command::Run(args) => run::exec(args),
        Command::Ps(args) => ps::exec(args),
        Command::Stop(args) => stop::exec(args),
        Command::Rm(args) => rm::exec(args),
        Command::Logs(args) => logs::exec(args),
        Command::ContainerSupervise(args) => container_supervise::exec(args),
        Command::Login(args) => login::exec(args),
        Command::Logout(args) => logout::exec(args),
        Command::Pull(args) | Command::Image(ImageCommand::Pull(args)) => pull::exec(args),
        Command::Push(args) | Command::Image(ImageCommand::Push(args)) => push::exec(args),
        Command::Tag(args) | Command::Image(ImageCommand::Tag(args)) => tag::exec(args),
        Command::Images(args) | Command::Image(ImageCommand::Ls(args)) => images::exec(args),
        Command::Rmi(args) | Command::Image(ImageCommand::Rm(args)) => rmi::exec(args),
        Command::Inspect(args) | Command::Image(ImageCommand::Inspect(args)) => inspect::exec(args),
        Command::Save(args) | Command::Image(ImageCommand::Save(args)) => save::exec(args),
        Command::Load(args) | Command::Image(ImageCommand::Load(args)) => load::exec(args),
    }
}

/// Applies `f` to each named container, going on past a failure as docker does: each name
/// done is printed, each error goes to stderr, and the exit code is 1 when any failed.
fn each_container(
    keys: &[String],
    mut f: impl FnMut(&str) -> berth_runtime::Result<()>,
) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for key in keys {
        match f(key) {
            Ok(()) => println!("{key}"),
            Err(e) => {
                eprintln!("Error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}
