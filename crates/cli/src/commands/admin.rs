use std::process::ExitCode;

use berth_api::{
    AuditParams, Grant, Membership, NewPassword, NewProject, NewRobot, NewUser, ProjectUpdate,
    RetentionRun, RobotUpdate, TagPatterns,
};
use serde_json::{Value, json};

use super::images::print_table;
use crate::context::{ClientContext, runtime};
use crate::time_text::human_size;

/// Manage a berth registry's users, projects, members and robot accounts, with the login
/// stored by `berth login REGISTRY`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  berth admin --registry localhost:5000 project create team\n  echo \"$PW\" | berth admin --registry localhost:5000 user add bob --password-stdin\n  berth admin --registry localhost:5000 member add team bob --role developer\n  berth admin --registry localhost:5000 robot create ci --project team --actions pull,push"
)]
pub struct Args {
    /// The registry [default: the client config's default registry]
    #[arg(long, global = true)]
    registry: Option<String>,
    /// Output format for lists: table, or json
    #[arg(long, global = true, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Allow plain HTTP and unverified TLS to this registry
    #[arg(long, global = true)]
    insecure: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// Accounts (system administrators only, but `passwd` of one's own).
    #[command(subcommand)]
    User(UserCommand),
    /// Projects: the first component of repository names.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Who may do what in a project.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Robot accounts for CI: a name and a secret, limited to projects and actions.
    #[command(subcommand)]
    Robot(RobotCommand),
    /// The audit log, newest first: pushes, deletes, failed logins, permission changes.
    /// System administrators read all of it; a project admin names its project.
    #[command(
        after_help = "Examples:\n  berth admin --registry localhost:5000 audit --since 24h\n  berth admin --registry localhost:5000 audit --project team --action delete.\n  berth admin --registry localhost:5000 audit --action login.failed --format json"
    )]
    Audit {
        /// Only events by this account (`robot$name` for robots)
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (push, delete.tag, login.failed, member.set, ...) or a prefix
        /// ending in `.` (delete.)
        #[arg(long)]
        action: Option<String>,
        /// Only events in this project
        #[arg(long)]
        project: Option<String>,
        /// Only events this recent: 90s, 30m, 24h, 7d
        #[arg(long, value_parser = crate::time_text::parse_age)]
        since: Option<u64>,
        /// At most this many events
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(clap::Subcommand)]
enum UserCommand {
    /// Create an account (it gets a private personal namespace of its name).
    Add {
        name: String,
        /// Read the password from standard input (otherwise prompt)
        #[arg(long)]
        password_stdin: bool,
        /// Make it a system administrator
        #[arg(long)]
        admin: bool,
    },
    /// List accounts.
    #[command(alias = "ls")]
    List,
    /// Remove an account.
    Rm { name: String },
    /// Change a password (one's own, or anyone's as a system administrator).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(clap::Subcommand)]
enum ProjectCommand {
    /// Create a project (private unless --public); you become its admin.
    Create {
        name: String,
        #[arg(long)]
        public: bool,
    },
    /// List the projects you can see.
    #[command(alias = "ls")]
    List,
    /// Remove a project.
    Rm { name: String },
    /// Make a project public or private.
    Set {
        name: String,
        #[arg(long, conflicts_with = "private", required_unless_present = "private")]
        public: bool,
        #[arg(long)]
        private: bool,
    },
    /// Show what a project stores: in total (each blob once), and per repository (unique
    /// and shared bytes).
    Usage { name: String },
    /// Set a project's storage quota (system administrators): bytes, or with a unit (500MB,
    /// 10GiB), or `none`.
    Quota {
        name: String,
        #[arg(value_parser = parse_quota)]
        size: Quota,
    },
    /// Show, set or clear the tag patterns (v*, release-*) whose tags cannot be overwritten
    /// or deleted once pushed (setting and clearing: system administrators).
    ImmutableTags {
        name: String,
        /// A pattern, `*` and `?` wildcards (repeat for several); replaces the current ones
        #[arg(long = "set", value_name = "PATTERN", conflicts_with = "clear")]
        set: Vec<String>,
        /// Remove every pattern (lifts the rules)
        #[arg(long)]
        clear: bool,
    },
    /// Show, set or clear a project's retention policy, or apply it now (`--run`). A policy
    /// is JSON: {"rules":[{"keep_last":10},{"tags":"release-*","keep_always":true},
    /// {"keep_pulled_within_days":30}]}; every tag no rule keeps is deleted.
    Retention {
        name: String,
        /// The policy, as JSON (`@FILE` reads it from a file)
        #[arg(long, value_name = "JSON", conflicts_with_all = ["clear", "run"])]
        set: Option<String>,
        /// Remove the policy
        #[arg(long, conflicts_with = "run")]
        clear: bool,
        /// Apply the policy now
        #[arg(long)]
        run: bool,
        /// With --run: show what would be deleted, delete nothing
        #[arg(long, requires = "run")]
        dry_run: bool,
    },
}

/// A quota given on the command line: `None` for no limit.
#[derive(Clone, Debug)]
struct Quota(Option<u64>);

/// `none`, bytes, or a number with a unit: kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB,
/// TiB (powers of 1024).
fn parse_quota(text: &str) -> Result<Quota, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Quota(None));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: bytes, 500MB, 10GiB or none"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: kB, MB, GB, TB, KiB, MiB, GiB, TiB"
            ));
        }
    };
    Ok(Quota(Some((number * scale).round() as u64)))
}

#[derive(clap::Subcommand)]
enum MemberCommand {
    /// Add a member, or change its role.
    Add {
        project: String,
        user: String,
        #[arg(long, value_parser = ["guest", "developer", "maintainer", "admin"])]
        role: String,
    },
    /// Remove a member.
    Rm { project: String, user: String },
    /// List a project's members.
    #[command(alias = "ls")]
    List { project: String },
}

#[derive(clap::Subcommand)]
enum RobotCommand {
    /// Create a robot account; prints its secret once.
    Create {
        name: String,
        /// Projects it may use (repeat for several)
        #[arg(long = "project", required = true)]
        projects: Vec<String>,
        /// What it may do there: pull, push, delete
        #[arg(long, value_delimiter = ',', default_value = "pull")]
        actions: Vec<String>,
        /// Days until it stops working [default: never]
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List robot accounts.
    #[command(alias = "ls")]
    List,
    /// Remove a robot account.
    Rm { name: String },
    /// Stop a robot account from logging in.
    Disable { name: String },
    /// Let a disabled robot account log in again.
    Enable { name: String },
}

pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let ctx = ClientContext::load()?;
    let registry = args
        .registry
        .clone()
        .unwrap_or_else(|| ctx.settings.default_registry.clone());
    let json = args.format == "json";
    // Passwords are read before connecting, so a prompt is not interleaved with errors.
    let password = match &args.command {
        AdminCommand::User(UserCommand::Add { password_stdin, .. })
        | AdminCommand::User(UserCommand::Passwd { password_stdin, .. }) => {
            Some(crate::prompt::password(*password_stdin)?)
        }
        _ => None,
    };
    runtime()?.block_on(async {
        let client = ctx.connect(&registry, args.insecure).await?;
        match args.command {
            AdminCommand::User(UserCommand::Add { name, admin, .. }) => {
                let user = NewUser {
                    name: name.clone(),
                    password: password.unwrap_or_default(),
                    admin,
                };
                let created = client.admin_create_user(&user).await?;
                match created.namespace {
                    Some(namespace) => {
                        println!("Created user {name} (private personal namespace {namespace})")
                    }
                    None => println!(
                        "Created user {name}, without a personal namespace: a project named \
                         {name} existed already and stays as it was"
                    ),
                }
            }
            AdminCommand::User(UserCommand::List) => {
                let list = client.admin_users().await?;
                show(
                    &serde_json::to_value(list)?,
                    json,
                    &["name", "admin", "disabled"],
                );
            }
            AdminCommand::User(UserCommand::Rm { name }) => {
                client.admin_delete_user(&name).await?;
                println!("Removed user {name}");
            }
            AdminCommand::User(UserCommand::Passwd { name, .. }) => {
                let new = NewPassword {
                    password: password.unwrap_or_default(),
                };
                client.admin_change_password(&name, &new).await?;
                println!(
                    "Password changed for {name}; every login and token of that account was \
                     revoked"
                );
            }
            AdminCommand::Project(ProjectCommand::Create { name, public }) => {
                let project = NewProject {
                    name: name.clone(),
                    public,
                };
                client.admin_create_project(&project).await?;
                let kind = if public { "public" } else { "private" };
                println!("Created {kind} project {name}");
            }
            AdminCommand::Project(ProjectCommand::List) => {
                let list = client.admin_projects().await?;
                show(
                    &serde_json::to_value(list)?,
                    json,
                    &["name", "public", "owner"],
                );
            }
            AdminCommand::Project(ProjectCommand::Rm { name }) => {
                client.admin_delete_project(&name).await?;
                println!("Removed project {name}");
            }
            AdminCommand::Project(ProjectCommand::Set { name, public, .. }) => {
                client
                    .admin_set_project_public(&name, &ProjectUpdate { public })
                    .await?;
                let kind = if public { "public" } else { "private" };
                println!("Project {name} is now {kind}");
            }
            AdminCommand::Project(ProjectCommand::Usage { name }) => {
                let usage = client.admin_project_usage(&name).await?;
                print_usage(&usage, json);
            }
            AdminCommand::Project(ProjectCommand::Quota { name, size }) => {
                let quota = berth_api::Quota {
                    quota_bytes: size.0,
                };
                client.admin_set_quota(&name, &quota).await?;
                match size.0 {
                    Some(bytes) => println!("Project {name} may now hold {}", human_size(bytes)),
                    None => println!("Project {name} has no quota now"),
                }
            }
            AdminCommand::Project(ProjectCommand::ImmutableTags { name, set, clear }) => {
                if clear || !set.is_empty() {
                    let patterns = TagPatterns {
                        patterns: set.clone(),
                    };
                    client.admin_set_immutable_tags(&name, &patterns).await?;
                    if set.is_empty() {
                        println!("Project {name} has no immutable tags now");
                    } else {
                        println!(
                            "Project {name} keeps these tags immutable: {}",
                            set.join(" ")
                        );
                    }
                } else {
                    let tags = client.admin_immutable_tags(&name).await?;
                    if json {
                        println!("{}", serde_json::to_value(&tags)?);
                    } else {
                        for p in &tags.patterns {
                            println!("{p}");
                        }
                    }
                }
            }
            AdminCommand::Project(ProjectCommand::Retention {
                name,
                set,
                clear,
                run,
                dry_run,
            }) => {
                if run {
                    let report = client
                        .admin_run_retention(&name, &RetentionRun { dry_run })
                        .await?;
                    print_retention(&report, json);
                } else if clear || set.is_some() {
                    let policy: Value = match set.as_deref() {
                        Some(text) => {
                            let text = match text.strip_prefix('@') {
                                Some(file) => std::fs::read_to_string(file)?,
                                None => text.to_string(),
                            };
                            serde_json::from_str(&text)
                                .map_err(|e| anyhow::anyhow!("the policy is not JSON: {e}"))?
                        }
                        None => json!({"rules": []}),
                    };
                    client.admin_set_retention_policy(&name, &policy).await?;
                    println!(
                        "{}",
                        if clear {
                            format!("Project {name} has no retention policy now")
                        } else {
                            format!("Retention policy of project {name} set")
                        }
                    );
                } else {
                    let policy = client.admin_retention_policy(&name).await?;
                    println!("{}", serde_json::to_string_pretty(&policy)?);
                }
            }
            AdminCommand::Member(MemberCommand::Add {
                project,
                user,
                role,
            }) => {
                let membership = Membership { role: role.clone() };
                client
                    .admin_set_member(&project, &user, &membership)
                    .await?;
                println!("{user} is {role} of {project}");
            }
            AdminCommand::Member(MemberCommand::Rm { project, user }) => {
                client.admin_remove_member(&project, &user).await?;
                println!("Removed {user} from {project}");
            }
            AdminCommand::Member(MemberCommand::List { project }) => {
                let list = client.admin_members(&project).await?;
                show(&serde_json::to_value(list)?, json, &["user", "role"]);
            }
            AdminCommand::Robot(RobotCommand::Create {
                name,
                projects,
                actions,
                expires_in_days,
            }) => {
                let robot = NewRobot {
                    name: name.clone(),
                    permissions: projects
                        .iter()
                        .map(|project| Grant {
                            project: project.clone(),
                            actions: actions.clone(),
                        })
                        .collect(),
                    expires_in_days,
                };
                let robot = client.admin_create_robot(&robot).await?;
                if json {
                    println!("{}", serde_json::to_value(&robot)?);
                } else {
                    println!("Created robot account {}", robot.name);
                    println!("Secret (shown once): {}", robot.secret);
                }
            }
            AdminCommand::Robot(RobotCommand::List) => {
                let list = client.admin_robots().await?;
                show(
                    &serde_json::to_value(list)?,
                    json,
                    &["name", "permissions", "expires_at", "disabled"],
                );
            }
            AdminCommand::Robot(RobotCommand::Rm { name }) => {
                client.admin_delete_robot(&name).await?;
                println!("Removed robot account {name}");
            }
            AdminCommand::Robot(RobotCommand::Disable { name }) => {
                set_robot_disabled(&client, &name, true).await?;
            }
            AdminCommand::Robot(RobotCommand::Enable { name }) => {
                set_robot_disabled(&client, &name, false).await?;
            }
            AdminCommand::Audit {
                actor,
                action,
                project,
                since,
                limit,
            } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let params = AuditParams {
                    actor,
                    action,
                    project,
                    since: since.map(|s| i64::try_from(now.saturating_sub(s)).unwrap_or(0)),
                    before: None,
                    limit: Some(limit),
                };
                let list = client.admin_audit(&params).await?;
                show(
                    &serde_json::to_value(list)?,
                    json,
                    &[
                        "time", "actor", "source", "action", "project", "resource", "detail",
                    ],
                );
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn set_robot_disabled(
    client: &berth_client::registry::RegistryClient,
    name: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    client
        .admin_update_robot(name, &RobotUpdate { disabled })
        .await?;
    let state = if disabled { "disabled" } else { "enabled" };
    println!("Robot account {name} {state}");
    Ok(())
}

/// A JSON list as a table of `columns` (or as JSON, one object per line).
/// What a retention run deleted (or would).
fn print_retention(report: &Value, json: bool) {
    if json {
        println!("{report}");
        return;
    }
    let dry = report["dry_run"].as_bool().unwrap_or(false);
    let deleted = report["deleted"].as_array().cloned().unwrap_or_default();
    for d in &deleted {
        println!(
            "{} {}:{} ({})",
            if dry { "would delete" } else { "deleted" },
            d["repository"].as_str().unwrap_or_default(),
            d["tag"].as_str().unwrap_or_default(),
            d["digest"].as_str().unwrap_or_default()
        );
    }
    println!(
        "{} tag(s) looked at, {} {}, {} kept as immutable",
        report["tags"],
        deleted.len(),
        if dry { "would go" } else { "deleted" },
        report["immutable"]
    );
}

/// A project's usage: a total line, then one row per repository.
fn print_usage(usage: &Value, json: bool) {
    if json {
        println!("{usage}");
        return;
    }
    let size = |v: &Value| human_size(v.as_u64().unwrap_or_default());
    let quota = match usage["quota_bytes"].as_u64() {
        Some(q) => format!(" of a {} quota", human_size(q)),
        None => ", no quota".to_string(),
    };
    println!(
        "Project {}: {}{quota} ({} blobs, {} manifests)",
        usage["project"].as_str().unwrap_or_default(),
        size(&usage["bytes"]),
        usage["blobs"],
        usage["manifests"]
    );
    let mut rows = vec![vec![
        "REPOSITORY".to_string(),
        "SIZE".into(),
        "UNIQUE".into(),
        "SHARED".into(),
    ]];
    for r in usage["repositories"].as_array().into_iter().flatten() {
        rows.push(vec![
            r["repository"].as_str().unwrap_or_default().to_string(),
            size(&r["bytes"]),
            size(&r["unique_bytes"]),
            size(&r["shared_bytes"]),
        ]);
    }
    print_table(&rows);
}

fn show(list: &Value, json: bool, columns: &[&str]) {
    let items = list.as_array().cloned().unwrap_or_default();
    if json {
        for item in items {
            println!("{item}");
        }
        return;
    }
    let mut rows = vec![columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>()];
    for item in &items {
        rows.push(
            columns
                .iter()
                .map(|c| match &item[*c] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    Value::Array(a) => a
                        .iter()
                        .map(|p| match (p["project"].as_str(), p["actions"].as_array()) {
                            (Some(project), Some(actions)) => format!(
                                "{project}:{}",
                                actions
                                    .iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            ),
                            _ => p.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    print_table(&rows);
}

#[cfg(test)]
mod tests {
    use crate::time_text::parse_age;

    #[test]
    fn ages() {
        assert_eq!(parse_age("90"), Ok(90));
        assert_eq!(parse_age("90s"), Ok(90));
        assert_eq!(parse_age("30m"), Ok(1800));
        assert_eq!(parse_age("24h"), Ok(86_400));
        assert_eq!(parse_age("7d"), Ok(604_800));
        for bad in ["", "h", "1w", "1.5h", "-1h", "99999999999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
