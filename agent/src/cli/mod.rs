//! The `muster` command line: one module per command.

pub mod goflags;

use std::process::ExitCode;

/// Entry point of the `muster` binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(dispatch(args));
    ExitCode::from(code)
}

async fn dispatch(args: Vec<String>) -> u8 {
    match args.first().map(String::as_str) {
        Some("agent") => agent(args[1..].to_vec()).await,
        _ => {
            eprintln!("usage: muster agent [options]");
            1
        }
    }
}

/// `muster agent`: resolve the configuration, then run until a signal.
pub async fn agent(args: Vec<String>) -> u8 {
    let config = match crate::config::from_agent_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    match crate::server::run(config).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("==> {e}");
            1
        }
    }
}
