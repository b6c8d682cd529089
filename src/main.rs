//! `akvfs`: exit 0 ok, 1 runtime error, 2 usage error (clap).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = akvfs::cli::Cli::parse();
    match akvfs::app::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: what failed, on what, why.
            eprintln!("akvfs: error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
