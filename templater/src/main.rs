//! `templater`: see the crate documentation and `templater -help`.

use std::process::ExitCode;

use templater::config::Settings;

fn main() -> ExitCode {
    let flags = templater::cli::parse();
    let settings = match Settings::resolve(&flags, |name| std::env::var(name).ok()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("templater: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings.log_level);
    // One thread: a change travels from the blocking query's answer to the rename and the
    // reload without a hop between threads (each hop is a wake-up the scheduler may delay on a
    // busy machine), and the daemon stays small. Renders are short; DNS helpers run on a
    // thread of their own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("templater: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let backend = match templater::make_backend(&settings) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("{e}");
                return 2;
            }
        };
        tracing::info!(
            backend = %backend.describe(),
            mode = ?settings.mode,
            confdir = %settings.confdir.display(),
            "templater starting"
        );
        templater::watcher::run(settings, backend).await
    });
    ExitCode::from(code as u8)
}

fn init_logging(level: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("TEMPLATER_LOG").unwrap_or_else(|_| {
            let level = match level.to_ascii_lowercase().as_str() {
                "panic" | "fatal" => "error".to_string(),
                "warning" => "warn".to_string(),
                other => other.to_string(),
            };
            tracing_subscriber::EnvFilter::new(format!("templater={level},warn"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
