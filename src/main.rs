//! `akvfs`: exit 0 ok, 1 runtime error, 2 usage error (clap). Invoked as `mount.akvfs` or
//! `mount.fuse.akvfs` it is a mount(8) helper instead (see `mount_helper`).

use std::io::Write;

use clap::Parser;

/// Freed memory is zeroed: secret values pass through buffers of libraries we do not own.
#[global_allocator]
static ALLOCATOR: akvfs::zeroing_alloc::ZeroOnFree = akvfs::zeroing_alloc::ZeroOnFree;

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .first()
        .is_some_and(|argv0| akvfs::mount_helper::invoked_as_helper(argv0))
    {
        return akvfs::mount_helper::main(args);
    }
    let cli = akvfs::cli::Cli::parse_from(akvfs::cli::expand_mount_options(args));
    match akvfs::app::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<akvfs::app::UsageError>().is_some() => {
            let _ = writeln!(std::io::stderr(), "akvfs: error: {err:#}");
            std::process::ExitCode::from(2)
        }
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: what failed, on what, why.
            // Ignore a closed stderr (a mount helper that already returned), never panic.
            let _ = writeln!(std::io::stderr(), "akvfs: error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
