//! `opsagent-hub`: `serve` runs the hub; the other subcommands are the operator CLI.
//!
//! Exit codes: 0 success; 1 the hub answered no (not found, exists already); 2 invalid input
//! (arguments, configuration, recipe, token); 3 environment (hub unreachable, data directory,
//! address in use, TLS files).

use std::process::ExitCode;

use clap::Parser;
use opsagent_hub::auth::{self, Secret};
use opsagent_hub::cli::{self, Cli, Command, ServeArgs};
use opsagent_hub::client::Exit;
use opsagent_hub::{ServeConfig, ServeError, TlsFiles};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Environment as u8);
        }
    };
    let exit = match &cli.command {
        Command::Serve(args) => runtime.block_on(serve(&cli, args)),
        Command::Quickstart(args) => runtime.block_on(quickstart(args)),
        _ => runtime.block_on(cli::run_operator(&cli)),
    };
    ExitCode::from(exit as u8)
}

async fn quickstart(args: &opsagent_hub::quickstart::QuickstartArgs) -> Exit {
    match opsagent_hub::quickstart::run(args).await {
        Ok(()) => Exit::Success,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            if let Some(hint) = failure.hint {
                eprintln!("\nhint: {hint}");
            }
            failure.exit
        }
    }
}

async fn serve(cli: &Cli, args: &ServeArgs) -> Exit {
    init_tracing();
    let api_token = match (&args.api_token_file, &cli.token) {
        (Some(path), _) => match auth::read_token_file(path) {
            Ok(token) => Some(token),
            Err(e) => {
                eprintln!("error: {e:#}");
                return Exit::Invalid;
            }
        },
        (None, Some(token)) if !token.trim().is_empty() => Some(Secret::new(token.trim().to_string())),
        _ => None,
    };
    let mut config = ServeConfig::new(args.listen, cli.data_dir.clone());
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
        _ => None,
    };
    config.insecure_plain_ws = args.insecure_plain_ws;
    config.api_token = api_token;
    config.public_url = args.public_url.clone();
    let hub = match opsagent_hub::serve(config).await {
        Ok(hub) => hub,
        Err(ServeError::Invalid { message, hint }) => {
            eprintln!("error: {message}\n\nhint: {hint}");
            return Exit::Invalid;
        }
        Err(ServeError::Environment(e)) => {
            eprintln!("error: {e:#}");
            return Exit::Environment;
        }
    };
    eprintln!(
        "opsagent-hub {} listening on {} (agents: {}; API: {}/api/v1; token in {})",
        env!("CARGO_PKG_VERSION"),
        hub.local_addr(),
        hub.agent_url(),
        hub.url(),
        if args.api_token_file.is_some() || cli.token.is_some() {
            "the given token".to_string()
        } else {
            cli.data_dir.join("api-token").display().to_string()
        }
    );
    wait_for_signal().await;
    tracing::info!("stopping");
    hub.shutdown().await;
    Exit::Success
}

/// Waits for SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

const QUIET_TARGETS: &[&str] =
    &["hyper=info", "hyper_util=info", "h2=info", "tungstenite=info", "tokio_tungstenite=info", "axum_server=info"];

/// Logs to stderr; `OPSAGENT_LOG` takes `RUST_LOG` syntax (default `info`), and
/// `OPSAGENT_LOG_FORMAT=json` writes one JSON object a line (for log shippers).
fn init_tracing() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("OPSAGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The HTTP and WebSocket libraries trace raw headers and frames (bearer tokens, handshake
    // HMACs): never below info, whatever `OPSAGENT_LOG` asks.
    for directive in QUIET_TARGETS {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("OPSAGENT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        let _ = builder.json().with_current_span(true).with_span_list(false).try_init();
    } else {
        let _ = builder.try_init();
    }
}
