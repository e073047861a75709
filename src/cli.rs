//! The `tracegraph` command: parses subcommands and dispatches. The only place that
//! uses `anyhow`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, Limits};
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
    /// Load an NDJSON data set (as written by `gen_dataset.py`). Safe to repeat.
    Import {
        /// The NDJSON file, or `-` for standard input.
        file: PathBuf,
        /// Traces written per transaction.
        #[arg(long, default_value_t = import::DEFAULT_BATCH_TRACES)]
        batch_traces: usize,
    },
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
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = App::build(config).await?;
            app.run().await?;
        }
        Command::Migrate => {
            db::connect(&config.database_url, 1).await?;
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
        Command::Import { file, batch_traces } => {
            let db = db::connect(&config.database_url, config.db_max_connections).await?;
            let limits = Limits::from(&config);
            let report = import::import_file(&db, &limits, &file, batch_traces.max(1)).await?;
            eprintln!("imported {} traces and {} spans", report.traces, report.spans);
        }
    }
    Ok(())
}
