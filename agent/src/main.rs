//! `muster`: parse the command line and dispatch; everything else lives in the library.

fn main() -> std::process::ExitCode {
    muster_agent::cli::main()
}
