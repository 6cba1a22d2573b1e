//! `deltaglider_proxy iam ...` and `deltaglider_proxy config-db ...`: IAM
//! in the config database, with the server stopped or running (a running
//! server applies a change within a second).

use std::path::PathBuf;

use clap::Subcommand;
use deltaglider_proxy::config::{ConditionSpec, Effect, IamMode, PermissionSpec, Settings};
use deltaglider_proxy::configdb::{ConfigDb, Owner, open_db};

#[derive(clap::Args)]
pub struct IamArgs {
    /// YAML configuration file (the same as for `serve`): where the database is, its key file, the IAM mode.
    #[arg(long, env = "DGP_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = super::Format::Text, global = true)]
    format: super::Format,
    #[command(subcommand)]
    command: IamCommand,
}

#[derive(Subcommand)]
enum IamCommand {
    /// Users: create, list, show, enable, disable, delete.
    #[command(subcommand)]
    User(UserCommand),
    /// Access keys of a user: create, rotate, delete.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Groups: create, list, show, delete, members.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Permissions of a user or a group: attach, detach.
    #[command(subcommand)]
    Permission(PermissionCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// A new user with one access key; the secret is shown once.
    Create {
        name: String,
        /// Groups to put the user in (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    List,
    Show {
        name: String,
    },
    /// A disabled user's keys are refused (InvalidAccessKeyId).
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Another access key for USER; the secret is shown once.
    Create {
        user: String,
    },
    /// A new key replaces KEY_ID (or the user's only key); the secret is shown once.
    Rotate {
        user: String,
        key_id: Option<String>,
    },
    Delete {
        user: String,
        key_id: String,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    Create { name: String },
    List,
    Show { name: String },
    Delete { name: String },
    AddMember { group: String, user: String },
    RemoveMember { group: String, user: String },
}

#[derive(clap::Args)]
struct Target {
    /// The user to change.
    #[arg(long, conflicts_with = "group", required_unless_present = "group")]
    user: Option<String>,
    /// The group to change.
    #[arg(long)]
    group: Option<String>,
}

impl Target {
    fn owner(&self) -> Owner<'_> {
        match (&self.user, &self.group) {
            (Some(u), _) => Owner::User(u),
            (None, Some(g)) => Owner::Group(g),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Subcommand)]
enum PermissionCommand {
    /// Adds `{effect, actions, resources, conditions}` (docs/iam.md).
    Attach {
        #[command(flatten)]
        target: Target,
        /// Allow or Deny.
        #[arg(long, default_value = "Allow")]
        effect: String,
        /// read, write, delete, list, admin, * or an S3 action such as s3:GetObject (repeatable).
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        /// `bucket` or `bucket/key-glob` (repeatable).
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// `Operator:key=value[,value...]`, e.g. `IpAddress:aws:SourceIp=192.168.1.0/24` (repeatable).
        #[arg(long = "condition")]
        conditions: Vec<String>,
    },
    /// Removes the permission at INDEX (as `show` lists them, from 0).
    Detach {
        #[command(flatten)]
        target: Target,
        index: usize,
    },
}

#[derive(Subcommand)]
pub enum ConfigDbCommand {
    /// Writes the whole database, sealed with its key, to FILE.
    Export {
        file: PathBuf,
        #[arg(long, env = "DGP_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Replaces the database's users and groups with an export made with the same key.
    Import {
        file: PathBuf,
        #[arg(long, env = "DGP_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn settings(config: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    let quiet = Some("deltaglider_proxy=warn".into());
    super::tool_settings(config, None, quiet)
        .ok_or_else(|| anyhow::anyhow!("the configuration is unusable"))
}

/// The server's database: never a new one (a CLI run from another directory
/// would otherwise make an empty database the server never reads).
fn existing_db(s: &Settings) -> anyhow::Result<ConfigDb> {
    let path = &s.config_db.path;
    if !path.exists() {
        anyhow::bail!(
            "no config database at {} (the server creates it when it first starts; is --config the server's file, and access.config_db_path an absolute path?)",
            path.display()
        );
    }
    open_db(s, &super::env_lookup)
}

fn print<T: serde::Serialize>(format: super::Format, v: &T, text: impl FnOnce(&T) -> String) {
    match format {
        super::Format::Json => println!("{}", serde_json::to_string_pretty(v).expect("serializes")),
        super::Format::Text => println!("{}", text(v)),
    }
}

fn new_key_text(k: &deltaglider_proxy::configdb::NewKey) -> String {
    format!(
        "user: {}\naccess_key_id: {}\nsecret_access_key: {}\n(the secret is shown only now; store it in the client's configuration)",
        k.user,
        k.access_key_id,
        k.secret_access_key.as_str()
    )
}

fn user_text(u: &deltaglider_proxy::configdb::UserInfo) -> String {
    let keys: Vec<_> = u
        .access_keys
        .iter()
        .map(|k| k.access_key_id.as_str())
        .collect();
    let mut s = format!(
        "{}{}  groups: [{}]  keys: [{}]",
        u.name,
        if u.enabled { "" } else { " (disabled)" },
        u.groups.join(", "),
        keys.join(", ")
    );
    for (i, p) in u.permissions.iter().enumerate() {
        s.push_str(&format!("\n  [{i}] {}", permission_text(p)));
    }
    s
}

fn permission_text(p: &PermissionSpec) -> String {
    let mut s = format!(
        "{:?} {} on {}",
        p.effect,
        p.actions.join(","),
        p.resources.join(",")
    );
    for c in &p.conditions {
        s.push_str(&format!(" if {}:{}={}", c.op, c.key, c.values.join(",")));
    }
    s
}

fn group_text(g: &deltaglider_proxy::configdb::GroupInfo) -> String {
    let mut s = format!("{}  members: [{}]", g.name, g.members.join(", "));
    for (i, p) in g.permissions.iter().enumerate() {
        s.push_str(&format!("\n  [{i}] {}", permission_text(p)));
    }
    s
}

fn condition(s: &str) -> anyhow::Result<ConditionSpec> {
    let (op, rest) = s
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("condition `{s}`: expected Operator:key=value[,value]"))?;
    let (key, values) = rest
        .rsplit_once('=')
        .ok_or_else(|| anyhow::anyhow!("condition `{s}`: expected Operator:key=value[,value]"))?;
    Ok(ConditionSpec {
        op: op.to_owned(),
        key: key.to_owned(),
        values: values.split(',').map(str::to_owned).collect(),
    })
}

pub fn run(args: IamArgs) -> anyhow::Result<()> {
    let s = settings(args.config.as_deref())?;
    let mut db = existing_db(&s)?;
    let f = args.format;
    let mutating = !matches!(
        args.command,
        IamCommand::User(UserCommand::List | UserCommand::Show { .. })
            | IamCommand::Group(GroupCommand::List | GroupCommand::Show { .. })
    );
    if mutating && s.iam_mode == IamMode::Declarative {
        return Err(deltaglider_proxy::configdb::DbError::Declarative.into());
    }
    match args.command {
        IamCommand::User(c) => match c {
            UserCommand::Create { name, groups } => {
                print(f, &db.create_user(&name, &groups)?, new_key_text)
            }
            UserCommand::List => print(f, &db.users()?, |us| {
                us.iter().map(user_text).collect::<Vec<_>>().join("\n")
            }),
            UserCommand::Show { name } => print(f, &db.user(&name)?, user_text),
            UserCommand::Disable { name } => {
                db.set_enabled(&name, false)?;
                print(f, &db.user(&name)?, user_text)
            }
            UserCommand::Enable { name } => {
                db.set_enabled(&name, true)?;
                print(f, &db.user(&name)?, user_text)
            }
            UserCommand::Delete { name } => {
                db.delete_user(&name)?;
                print(f, &serde_json::json!({"deleted": name}), |_| {
                    format!("deleted user {name}")
                })
            }
        },
        IamCommand::Key(c) => match c {
            KeyCommand::Create { user } => print(f, &db.create_key(&user)?, new_key_text),
            KeyCommand::Rotate { user, key_id } => {
                print(f, &db.rotate_key(&user, key_id.as_deref())?, new_key_text)
            }
            KeyCommand::Delete { user, key_id } => {
                db.delete_key(&user, &key_id)?;
                print(f, &serde_json::json!({"deleted": key_id}), |_| {
                    format!("deleted access key {key_id}")
                })
            }
        },
        IamCommand::Group(c) => match c {
            GroupCommand::Create { name } => {
                db.create_group(&name)?;
                print(f, &db.group(&name)?, group_text)
            }
            GroupCommand::List => print(f, &db.groups()?, |gs| {
                gs.iter().map(group_text).collect::<Vec<_>>().join("\n")
            }),
            GroupCommand::Show { name } => print(f, &db.group(&name)?, group_text),
            GroupCommand::Delete { name } => {
                db.delete_group(&name)?;
                print(f, &serde_json::json!({"deleted": name}), |_| {
                    format!("deleted group {name}")
                })
            }
            GroupCommand::AddMember { group, user } => {
                db.add_member(&user, &group)?;
                print(f, &db.group(&group)?, group_text)
            }
            GroupCommand::RemoveMember { group, user } => {
                db.remove_member(&user, &group)?;
                print(f, &db.group(&group)?, group_text)
            }
        },
        IamCommand::Permission(c) => match c {
            PermissionCommand::Attach {
                target,
                effect,
                actions,
                resources,
                conditions,
            } => {
                let effect = match effect.to_ascii_lowercase().as_str() {
                    "allow" => Effect::Allow,
                    "deny" => Effect::Deny,
                    other => anyhow::bail!("unknown effect `{other}` (expected Allow or Deny)"),
                };
                let p = PermissionSpec {
                    effect,
                    actions,
                    resources,
                    conditions: conditions
                        .iter()
                        .map(|c| condition(c))
                        .collect::<anyhow::Result<_>>()?,
                };
                let i = db.attach(target.owner(), p)?;
                print(f, &serde_json::json!({"index": i}), |_| {
                    format!("attached as permission {i}")
                })
            }
            PermissionCommand::Detach { target, index } => {
                let p = db.detach(target.owner(), index)?;
                print(f, &p, |p| format!("detached: {}", permission_text(p)))
            }
        },
    }
    Ok(())
}

pub fn config_db(cmd: ConfigDbCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigDbCommand::Export { file, config } => {
            let s = settings(config.as_deref())?;
            let db = existing_db(&s)?;
            let bytes = db.export()?;
            let mut out = deltaglider_proxy::configdb::create_private_file(&file)?;
            std::io::Write::write_all(&mut out, &bytes)?;
            out.sync_all()?;
            eprintln!(
                "exported {} to {} (sealed with the database key: keep the key as well, docs/backup.md)",
                s.config_db.path.display(),
                file.display()
            );
        }
        ConfigDbCommand::Import { file, config } => {
            let s = settings(config.as_deref())?;
            if s.iam_mode == IamMode::Declarative {
                return Err(deltaglider_proxy::configdb::DbError::Declarative.into());
            }
            let bytes = std::fs::read(&file)?;
            let mut db = open_db(&s, &super::env_lookup)?;
            let n = db.import(&bytes)?;
            eprintln!("imported {n} users into {}", s.config_db.path.display());
        }
    }
    Ok(())
}
