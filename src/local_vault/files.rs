//! Files of the local vault, each created with an explicit mode whatever the umask: secret
//! material (keys, database, env file, lock, log) 0600, public certificates 0644. A mode given to
//! `open(2)` only narrows under the umask and does nothing for a file that already exists, so
//! every writer also sets the mode on the open descriptor (`fchmod`).
//!
//! The data directory is private: created 0700, and an existing one writable by its group or by
//! others is refused (anyone who can write there could replace `ca.pem` or the database).

use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::LocalVaultError;

/// Mode of secret material: keys, database, env file, lock, logs.
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of public certificates (`ca.pem`, `tls.pem`) and `tls.names`.
pub const PUBLIC_MODE: u32 = 0o644;

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> LocalVaultError {
    move |source| LocalVaultError::Io { what, source }
}

/// Writes `bytes` to `path` (replacing any content) with exactly `mode`, synced.
pub fn write_file_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LocalVaultError> {
    let io = |source| io_error(format!("writing {}", path.display()))(source);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    // An existing file keeps its mode through open(), and the umask narrows a new one: set it.
    f.set_permissions(Permissions::from_mode(mode))
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Writes a file readable by its owner only (mode 0600), replacing any previous content.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), LocalVaultError> {
    write_file_with_mode(path, bytes, PRIVATE_MODE)
}

/// Writes a public file (mode 0644): certificates.
pub fn write_public_file(path: &Path, bytes: &[u8]) -> Result<(), LocalVaultError> {
    write_file_with_mode(path, bytes, PUBLIC_MODE)
}

/// Opens (creating) a file for reading and writing without truncating it, with mode 0600.
pub fn open_private_file(path: &Path) -> Result<File, LocalVaultError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_MODE)
        .open(path)
        .map_err(io_error(format!("opening {}", path.display())))?;
    file.set_permissions(Permissions::from_mode(PRIVATE_MODE))
        .map_err(io_error(format!("setting the mode of {}", path.display())))?;
    Ok(file)
}

/// Gives an existing file `mode` (files kept from an earlier start, perhaps made under another
/// umask or by an older version).
pub fn set_mode(path: &Path, mode: u32) -> Result<(), LocalVaultError> {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(io_error(format!("setting the mode of {}", path.display())))
}

/// Opens a log file for appending, created 0600. An existing regular file is made 0600 too
/// (logs name secrets, never their values); a device or a pipe (`/dev/stderr`) is left as it is.
pub fn open_log_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(PRIVATE_MODE)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.permissions().mode() & 0o777 != PRIVATE_MODE {
        file.set_permissions(Permissions::from_mode(PRIVATE_MODE))?;
    }
    Ok(file)
}

/// Creates the data directory (0700, parents too) or checks an existing one: it must be a
/// directory that neither its group nor others can write.
pub fn prepare_private_dir(dir: &Path) -> Result<(), LocalVaultError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(format!("creating {}", dir.display())))?;
    let meta = std::fs::metadata(dir).map_err(io_error(format!("reading {}", dir.display())))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "its group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(LocalVaultError::Config(format!(
            "the data directory {} is writable by {who} (mode {mode:04o}); anyone who can write \
             there could replace its certificates or database: run `chmod go-w {}` or pass \
             another --data DIR",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn existing_files_get_the_explicit_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).expect("chmod");
        write_public_file(&path, b"cert").expect("public");
        assert_eq!(mode_of(&path), 0o644);
        write_private_file(&path, b"key").expect("private");
        assert_eq!(mode_of(&path), 0o600);
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).expect("chmod");
        drop(open_log_file(&path).expect("log"));
        assert_eq!(mode_of(&path), 0o600);
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
        drop(open_private_file(&path).expect("lock"));
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(std::fs::read(&path).expect("read"), b"key");
    }

    #[test]
    fn a_data_dir_writable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        prepare_private_dir(&data).expect("created");
        assert_eq!(mode_of(&data), 0o700);
        for (mode, ok) in [(0o700, true), (0o755, true), (0o770, false), (0o702, false)] {
            std::fs::set_permissions(&data, Permissions::from_mode(mode)).expect("chmod");
            let result = prepare_private_dir(&data);
            assert_eq!(result.is_ok(), ok, "{mode:o}");
            if let Err(e) = result {
                assert!(e.to_string().contains(&data.display().to_string()), "{e}");
            }
        }
    }
}
