//! Owners and modes as people write them (`--file-mode`, `--uid`, and the projection config's
//! `mode`, `uid`, `gid`): one rule for the command line and the config file.

/// Permission bits only: a setuid, setgid or sticky bit would let anyone who can set a secret
/// plant a program another user runs with the file's owner (the mount is nosuid regardless).
pub fn parse_mode(s: &str) -> Result<u16, String> {
    let mode = u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("'{s}' is not an octal mode like 0600"))?;
    if mode & 0o7000 != 0 {
        return Err(format!(
            "'{s}' has a setuid, setgid or sticky bit; only permission bits (0000-0777) are allowed"
        ));
    }
    Ok(mode)
}

/// A user or group id; `-1` (4294967295) means "unchanged" to chown and is no owner.
pub fn parse_id(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|id| *id != u32::MAX)
        .ok_or_else(|| format!("'{s}' is not a numeric id below 4294967295"))
}
