//! The `deltaglider_proxy` binary: parse the command line, run, map errors to
//! an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod iam_cli;

#[derive(Parser)]
#[command(
    name = "deltaglider_proxy",
    version,
    about = "S3 storage appliance: one S3 endpoint over an encrypting filesystem store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the S3 server.
    Serve(ServeArgs),
    /// Configuration file tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Encryption at rest: status, audit, key rotation, export.
    Encryption(EncryptionArgs),
    /// Storage savings of delta compression: logical vs stored bytes per bucket and per deltaspace.
    Stats(StatsArgs),
    /// Mount the read-only view of the decrypted objects (FUSE) and serve it until SIGINT/SIGTERM.
    Mount(MountArgs),
    /// Bucket tools: move a bucket to another backend.
    Bucket(BucketArgs),
    /// IAM users, groups, access keys and permissions in the config database.
    Iam(iam_cli::IamArgs),
    /// The config database: encrypted export and import (backup).
    #[command(subcommand)]
    ConfigDb(iam_cli::ConfigDbCommand),
    /// Print the argon2id hash of a password (read from the terminal, or one
    /// line of stdin), for DGP_BOOTSTRAP_PASSWORD_HASH.
    HashPassword,
}

#[derive(clap::Args)]
struct BucketArgs {
    /// YAML configuration file (the same as for `serve`).
    #[arg(long, env = "DGP_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Root of the embedded default filesystem backend (default ./data).
    #[arg(long, env = "DGP_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: BucketCommand,
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Copy every object of BUCKET to backend BACKEND (re-encrypted for its mode), verify,
    /// then route the bucket there. Writes to the bucket pause while it runs; resumable.
    Migrate {
        /// The bucket, as clients name it.
        bucket: String,
        /// The destination backend (a name from storage.backends).
        #[arg(long)]
        to: String,
        /// The bucket's name on the destination (default: its name on its current backend).
        #[arg(long = "as")]
        as_name: Option<String>,
        /// Pause between objects, to limit the I/O load on a busy box.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
}

#[derive(clap::Args)]
struct StatsArgs {
    /// YAML configuration file (the same as for `serve`).
    #[arg(long, env = "DGP_CONFIG")]
    config: Option<PathBuf>,
    /// Root of the embedded default filesystem backend (default ./data).
    #[arg(long, env = "DGP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Only this bucket.
    #[arg(long)]
    bucket: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(clap::Args)]
struct MountArgs {
    /// An empty directory to mount on.
    mountpoint: PathBuf,
    /// YAML configuration file (the same as for `serve`).
    #[arg(long, env = "DGP_CONFIG")]
    config: Option<PathBuf>,
    /// Root of the embedded default filesystem backend (default ./data).
    #[arg(long, env = "DGP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Show only this bucket (its keys at the top of the mount).
    #[arg(long)]
    bucket: Option<String>,
    /// Let other users read the mount (needs `user_allow_other` in /etc/fuse.conf unless root).
    #[arg(long)]
    allow_other: bool,
}

#[derive(clap::Args)]
struct EncryptionArgs {
    /// YAML configuration file (the same as for `serve`).
    #[arg(long, env = "DGP_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Root of the embedded default filesystem backend (default ./data).
    #[arg(long, env = "DGP_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    format: Format,
    #[command(subcommand)]
    command: EncryptionCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum EncryptionCommand {
    /// Enabled state, mode, key ids in use with object counts (never key material).
    Status,
    /// Read-only check of every object's encryption marker, key and header.
    Audit {
        /// Decrypt every chunk of every object, not only the first.
        #[arg(long)]
        deep: bool,
    },
    /// Rewrap every object's data key under the current key (the old key as legacy_key).
    RotateKek,
    /// Rewrite every object that does not match the current config (write-gates the buckets; resumable).
    Reencrypt {
        /// Only these buckets (repeatable); default: every bucket.
        #[arg(long = "bucket")]
        buckets: Vec<String>,
        /// Pause between objects, to limit the I/O load on a busy box.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
    /// Decrypt a bucket to plaintext files (disaster recovery); DIR must not exist.
    Export {
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        target: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// YAML configuration file.
    #[arg(long, env = "DGP_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (default 0.0.0.0:9000).
    #[arg(long, env = "DGP_LISTEN_ADDR")]
    listen: Option<String>,
    /// Root of the embedded default filesystem backend (default ./data).
    #[arg(long, env = "DGP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Allow requests without credentials (every request gets full access).
    #[arg(long, env = "DGP_OPEN_ACCESS", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    open_access: bool,
    /// Set the admin UI's bootstrap password (read from the terminal, or one
    /// line of stdin), store its hash in the config database, and exit. A
    /// running server uses it from the next login; its sessions end.
    #[arg(long)]
    set_bootstrap_password: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file offline.
    Lint {
        /// The YAML file to check.
        file: PathBuf,
    },
    /// Print a configuration file in canonical form, as `GET /_/api/config`
    /// does: fields at their default omitted, literal secrets redacted.
    Export {
        /// The YAML file (default: `DGP_CONFIG`).
        file: Option<PathBuf>,
        /// Print JSON instead of YAML.
        #[arg(long)]
        json: bool,
        /// Keep literal secrets instead of redacting them (a backup of the
        /// file, not something to commit).
        #[arg(long)]
        show_secrets: bool,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Lint { file }) => lint(&file),
        Command::Config(ConfigCommand::Export {
            file,
            json,
            show_secrets,
        }) => export(file, json, show_secrets),
        Command::Config(ConfigCommand::Schema) => {
            let schema = deltaglider_proxy::config::document::schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::Serve(args) if args.set_bootstrap_password => set_bootstrap_password(args),
        Command::Serve(args) => serve(args),
        Command::HashPassword => hash_password(),
        Command::Encryption(args) => encryption(args),
        Command::Mount(args) => mount(args),
        Command::Stats(args) => stats(args),
        Command::Bucket(args) => bucket(args),
        Command::Iam(args) => exit_code(iam_cli::run(args)),
        Command::ConfigDb(cmd) => exit_code(iam_cli::config_db(cmd)),
    }
}

/// Loads the settings and starts logging; prints the error and returns
/// `None` when the configuration is unusable.
fn load_settings(
    config: Option<&std::path::Path>,
    overrides: &deltaglider_proxy::config::Overrides,
) -> Option<deltaglider_proxy::config::Settings> {
    match deltaglider_proxy::config::load(config, overrides, &env_lookup) {
        Ok(s) => {
            deltaglider_proxy::logging::init(&s.log_level);
            Some(s)
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// The settings of an operator command (no listener, no credentials).
fn tool_settings(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
) -> Option<deltaglider_proxy::config::Settings> {
    let overrides = deltaglider_proxy::config::Overrides {
        listen_addr: None,
        data_dir,
        access_key_id: None,
        secret_access_key: None,
        log_level,
        trust_proxy_headers: None,
    };
    load_settings(config, &overrides)
}

/// Prints a command's error and maps it to the exit code.
fn exit_code(res: anyhow::Result<()>) -> ExitCode {
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs a long-running command's error (to the journal under systemd).
fn logged(res: anyhow::Result<()>) -> anyhow::Result<()> {
    res.inspect_err(|e| tracing::error!("{e:#}"))
}

fn encryption(args: EncryptionArgs) -> ExitCode {
    let quiet = Some("deltaglider_proxy=warn".into());
    let Some(settings) = tool_settings(args.config.as_deref(), args.data_dir, quiet) else {
        return ExitCode::FAILURE;
    };
    let json = args.format == Format::Json;
    use deltaglider_proxy::ops;
    let res = match args.command {
        EncryptionCommand::Status => ops::status(&settings, json),
        EncryptionCommand::Audit { deep } => ops::audit(&settings, deep, json),
        EncryptionCommand::RotateKek => ops::rotate_kek(&settings, json),
        EncryptionCommand::Reencrypt { buckets, pause_ms } => {
            ops::reencrypt(&settings, &buckets, pause_ms, json)
        }
        EncryptionCommand::Export { bucket, target } => ops::export(&settings, &bucket, &target),
    };
    exit_code(res)
}

fn bucket(args: BucketArgs) -> ExitCode {
    let quiet = Some("deltaglider_proxy=warn".into());
    let Some(settings) = tool_settings(args.config.as_deref(), args.data_dir, quiet) else {
        return ExitCode::FAILURE;
    };
    match args.command {
        BucketCommand::Migrate {
            bucket,
            to,
            as_name,
            pause_ms,
        } => exit_code(deltaglider_proxy::ops::migrate(
            &settings,
            &bucket,
            &to,
            as_name.as_deref(),
            pause_ms,
        )),
    }
}

fn stats(args: StatsArgs) -> ExitCode {
    let quiet = Some("deltaglider_proxy=warn".into());
    let Some(settings) = tool_settings(args.config.as_deref(), args.data_dir, quiet) else {
        return ExitCode::FAILURE;
    };
    let json = args.format == Format::Json;
    exit_code(deltaglider_proxy::ops::stats(
        &settings,
        args.bucket.as_deref(),
        json,
    ))
}

fn mount(args: MountArgs) -> ExitCode {
    let log_level = env_lookup("DGP_LOG_LEVEL");
    let Some(settings) = tool_settings(args.config.as_deref(), args.data_dir, log_level) else {
        return ExitCode::FAILURE;
    };
    let opts = deltaglider_proxy::fuse::MountOptions {
        mountpoint: args.mountpoint,
        allow_other: args.allow_other,
        bucket: args.bucket,
    };
    exit_code(logged(deltaglider_proxy::ops::mount(&settings, &opts)))
}

fn lint(file: &std::path::Path) -> ExitCode {
    match deltaglider_proxy::config::lint(file, &env_lookup) {
        Ok(report) => {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: OK", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn export(file: Option<PathBuf>, json: bool, show_secrets: bool) -> ExitCode {
    use deltaglider_proxy::config::document;
    let Some(file) = deltaglider_proxy::config::config_path(file.as_deref(), &env_lookup) else {
        eprintln!("config export: name the file, or set DGP_CONFIG");
        return ExitCode::FAILURE;
    };
    let doc = std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            document::read(&text, &file.display().to_string()).map_err(|e| e.to_string())
        });
    let doc = match doc {
        Ok(d) => document::without_defaults(&d, &env_lookup),
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let doc = if show_secrets {
        doc
    } else {
        document::redacted(&doc)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", document::to_yaml(&doc));
    }
    ExitCode::SUCCESS
}

/// What the command line and the environment set over the config file.
fn serve_overrides(args: &ServeArgs) -> deltaglider_proxy::config::Overrides {
    deltaglider_proxy::config::Overrides {
        listen_addr: args.listen.clone(),
        data_dir: args.data_dir.clone(),
        access_key_id: env_lookup("DGP_ACCESS_KEY_ID"),
        secret_access_key: env_lookup("DGP_SECRET_ACCESS_KEY"),
        log_level: env_lookup("DGP_LOG_LEVEL"),
        trust_proxy_headers: env_lookup("DGP_TRUST_PROXY_HEADERS"),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = serve_overrides(&args);
    let Some(settings) = load_settings(args.config.as_deref(), &overrides) else {
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let source = deltaglider_proxy::reload::Source {
        path: deltaglider_proxy::config::config_path(args.config.as_deref(), &env_lookup),
        overrides,
        open_access: args.open_access,
    };
    exit_code(logged(
        runtime.block_on(deltaglider_proxy::server::run(settings, source)),
    ))
}

/// A new password from the terminal (asked twice) or one line of stdin.
fn read_new_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    let pw = if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("New password: ")?;
        let b = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(a == b, "the two passwords differ");
        a
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let min = deltaglider_proxy::admin::password::MIN_LEN;
    anyhow::ensure!(
        pw.chars().count() >= min,
        "the password must have at least {min} characters"
    );
    Ok(pw)
}

fn hash_password() -> ExitCode {
    exit_code(logged(read_new_password().and_then(|pw| {
        println!("{}", deltaglider_proxy::admin::password::hash(&pw)?);
        Ok(())
    })))
}

fn set_bootstrap_password(args: ServeArgs) -> ExitCode {
    let Some(settings) = load_settings(args.config.as_deref(), &serve_overrides(&args)) else {
        return ExitCode::FAILURE;
    };
    use deltaglider_proxy::admin::password;
    exit_code(logged((|| -> anyhow::Result<()> {
        let pw = read_new_password()?;
        let hash = password::hash(&pw)?;
        let mut db = deltaglider_proxy::configdb::open_db(&settings, &env_lookup)?;
        db.set_server_setting(deltaglider_proxy::configdb::BOOTSTRAP_PASSWORD_HASH, &hash)?;
        eprintln!(
            "bootstrap password set in {}; a running server uses it from the next login",
            settings.config_db.path.display()
        );
        if env_lookup(password::ENV_HASH).is_some_and(|v| !v.trim().is_empty()) {
            eprintln!(
                "warning: {} is set and wins over the stored hash; unset it to use this password",
                password::ENV_HASH
            );
        }
        Ok(())
    })()))
}
