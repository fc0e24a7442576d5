//! `ctxgate`: the local server (`serve`) and the admin CLI (`keys`, `table`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ctxgate::config::{Config, StoreKind};
use ctxgate::store::dynamo::DynamoStore;
use ctxgate::{AppState, auth, now_secs};

// A turn makes a few hundred small allocations; mimalloc serves them in
// fewer instructions than glibc's malloc (docs/benchmarks.md, issue 19).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ctxgate",
    version,
    about = "Serverless LLM gateway: local server and admin CLI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every route on CTXGATE_LISTEN (default 127.0.0.1:8787).
    Serve,
    /// Manage API keys in the configured store.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage the DynamoDB table.
    Table {
        #[command(subcommand)]
        command: TableCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Mint a key; the last line of output is the secret, shown only once.
    Create {
        /// Tenant the key belongs to.
        #[arg(long)]
        tenant: String,
        /// A label for the key.
        #[arg(long, default_value = "default")]
        name: String,
        /// A scope to grant (repeatable); default: chat, conversations:read, conversations:write.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A model the key may use (repeatable); default: all.
        #[arg(long = "model")]
        models: Vec<String>,
        /// An MCP server chat requests use when they name none (repeatable).
        #[arg(long = "mcp-server")]
        mcp_servers: Vec<String>,
        /// A glob over federated tools (`{server}__{tool}`, e.g. `crm__get_*`)
        /// the key may use through `/mcp` (repeatable); default: all.
        #[arg(long = "mcp-tool")]
        mcp_tools: Vec<String>,
        /// Requests per minute for this key (default: the configured limit).
        #[arg(long)]
        rpm: Option<u32>,
        /// Days until the key expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List keys (never secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id.
    Revoke {
        /// The key id (`key_...`).
        id: String,
    },
}

#[derive(Subcommand)]
enum TableCommand {
    /// Create the DynamoDB table with the schema the SAM template declares.
    Create,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ctxgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve => serve().await,
        Command::Keys { command } => keys(command).await,
        Command::Table {
            command: TableCommand::Create,
        } => {
            let config = Config::from_env()?;
            if config.store != StoreKind::Dynamodb {
                return Err("table create needs CTXGATE_STORE=dynamodb".into());
            }
            let aws = ctxgate::aws::sdk_config(&config).await;
            DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), config.table.clone())
                .create_table()
                .await?;
            println!("created table {}", config.table);
            Ok(())
        }
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    ctxgate::telemetry::init();
    let state = AppState::from_env().await?;
    let listener = tokio::net::TcpListener::bind(&state.config.listen).await?;
    tracing::info!(address = %listener.local_addr()?, store = ?state.config.store, "ctxgate listening");
    let app = ctxgate::http::app(state.clone());
    // Streamed chunks are small writes: without TCP_NODELAY, Nagle's algorithm
    // holds each behind the client's delayed ACK (~40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // SIGTERM or SIGINT: stop accepting, let in-flight requests finish, then
    // write the usage still in memory before exiting.
    axum::serve(listener, app)
        .with_graceful_shutdown(ctxgate::shutdown::signal())
        .await?;
    ctxgate::shutdown::flush_usage(&state.usage).await;
    ctxgate::trace::flush().await;
    Ok(())
}

async fn keys(command: KeysCommand) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let store = ctxgate::state::key_store(&config).await?;
    match command {
        KeysCommand::Create {
            tenant,
            name,
            scopes,
            models,
            mcp_servers,
            mcp_tools,
            rpm,
            expires_in_days,
        } => {
            if let Some(bad) = mcp_tools
                .iter()
                .find(|g| !ctxgate::mcp::names::is_tool_glob(g))
            {
                return Err(format!(
                    "--mcp-tool {bad:?}: globs are 1-128 characters from A-Z, a-z, 0-9, '_', '*', '.' and '-'"
                )
                .into());
            }
            if mcp_tools.len() > ctxgate::mcp::names::MAX_TOOL_GLOBS {
                return Err(format!(
                    "at most {} --mcp-tool globs",
                    ctxgate::mcp::names::MAX_TOOL_GLOBS
                )
                .into());
            }
            if let Some(bad) = mcp_servers
                .iter()
                .find(|s| !ctxgate::mcp::registry::is_server_name(s))
            {
                return Err(format!(
                    "--mcp-server {bad:?}: server names are 1-32 characters from a-z, 0-9 and '-'"
                )
                .into());
            }
            let now = now_secs();
            let spec = auth::KeySpec {
                tenant,
                name,
                scopes,
                models,
                rpm,
                valid_until: expires_in_days.map(|d| now + i64::from(d) * 86_400),
                mcp_servers,
                mcp_tools,
            };
            let key = auth::mint(&spec, now)?;
            store.put_key(&key.record).await?;
            println!("key id: {}", key.record.key_id);
            println!("tenant: {}", key.record.tenant);
            println!("scopes: {}", key.record.scopes.join(" "));
            println!("the secret below is shown only once:");
            println!("{}", key.secret);
        }
        KeysCommand::List { tenant } => {
            for k in store.list_keys(tenant.as_deref()).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.key_id,
                    k.tenant,
                    k.name,
                    k.scopes.join(","),
                    if k.revoked { "revoked" } else { "active" }
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(&id).await? {
                return Err(format!("no key with id {id}").into());
            }
            println!(
                "revoked {id} (warm processes notice within {} s)",
                config.key_cache_ttl.as_secs()
            );
        }
    }
    Ok(())
}
