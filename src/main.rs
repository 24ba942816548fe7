//! The `fluxgate` binary: parse the command line and dispatch. Errors end the process with a
//! one-paragraph message and exit code 1, never a panic or a stack trace.
use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = fluxgate::cli::Cli::parse();
    if let Err(e) = fluxgate::cli::run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
