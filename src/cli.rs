//! The `tracegraph` command: parses subcommands and dispatches. The only place that
//! uses `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::auth::{self, Scope};
use crate::config::{Config, Limits};
use crate::db::store;
use crate::{db, graphql, import, telemetry};

/// A GraphQL trace store for AI-agent runs.
#[derive(Debug, Parser)]
#[command(name = "tracegraph", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the GraphQL API (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Write the GraphQL schema (SDL) to a file, or `-` for standard output.
    ExportSchema {
        #[arg(default_value = "schema.graphql")]
        out: PathBuf,
    },
    /// Create, list and revoke API keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Load an NDJSON data set (as written by `gen_dataset.py`). Safe to repeat.
    Import {
        /// The NDJSON file, or `-` for standard input.
        file: PathBuf,
        /// Traces written per transaction.
        #[arg(long, default_value_t = import::DEFAULT_BATCH_TRACES, value_parser = crate::config::at_least_one::<usize>)]
        batch_traces: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it; it is shown this once and stored only as a hash.
    Create {
        /// A unique name, shown in listings and on the flags the key makes.
        #[arg(value_parser = auth::key_name)]
        name: String,
        /// What the key may do; repeat for several.
        #[arg(long = "scope", value_enum, required = true)]
        scopes: Vec<Scope>,
        /// Limit the key to this product; repeat for several. Without it, every product.
        #[arg(long = "product")]
        products: Vec<uuid::Uuid>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key; requests with it fail from the next one on.
    Revoke { name: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", said_once(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and each cause it does not already say. Most errors here, and SeaORM's,
/// put their source in their own message: the chain printed as is said the same reason
/// two or three times over.
fn said_once(error: &anyhow::Error) -> String {
    let mut said = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !said.contains(&cause) {
            said.push_str(": ");
            said.push_str(&cause);
        }
    }
    said
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = App::build(config).await?;
            app.run().await?;
        }
        Command::Migrate => {
            db::connect_with(&config.database_url, config.pool(1))
                .await?
                .close()
                .await;
            eprintln!("database is up to date");
        }
        Command::ExportSchema { out } => {
            let sdl = graphql::sdl();
            if out.as_os_str() == "-" {
                print!("{sdl}");
            } else {
                std::fs::write(&out, sdl)?;
                eprintln!("wrote {}", out.display());
            }
        }
        Command::Keys { action } => {
            let db = db::connect_with(&config.database_url, config.pool(1)).await?;
            let done = keys(&db, action).await;
            db.close().await;
            done?;
        }
        Command::Import { file, batch_traces } => {
            let prices = config.load_prices()?;
            let db = db::connect_with(&config.database_url, config.pool(config.db_max_connections)).await?;
            let limits = Limits::from(&config);
            let report = import::import_file(&db, &limits, &prices, &file, batch_traces).await;
            db.close().await;
            let report = report?;
            eprintln!("imported {} traces and {} spans", report.traces, report.spans);
        }
    }
    Ok(())
}

async fn keys(db: &db::Db, action: KeysCommand) -> anyhow::Result<()> {
    match action {
        KeysCommand::Create { name, scopes, products } => {
            let products = (!products.is_empty()).then_some(products);
            let (row, key) = auth::generate(&name, &scopes, products);
            store::keys::insert(&db.write, row).await?;
            eprintln!("created key {name:?}; store it now, it is not shown again:");
            println!("{key}");
        }
        KeysCommand::List => {
            println!(
                "{:<24} {:<14} {:<20} {:<26} status",
                "name", "prefix", "scopes", "created"
            );
            for key in store::keys::all(&db.read).await? {
                let status = match key.revoked_at {
                    Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                    None => "active".into(),
                };
                let products = key.products.map(|p| format!(" products={p}")).unwrap_or_default();
                println!(
                    "{:<24} {:<14} {:<20} {:<26} {status}{products}",
                    key.name,
                    format!("{}…", key.prefix),
                    key.scopes,
                    key.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                );
            }
        }
        KeysCommand::Revoke { name } => {
            store::keys::revoke(&db.write, &name).await?;
            eprintln!("revoked key {name:?}");
        }
    }
    Ok(())
}
