//! Who is behind a FUSE request, read from `/proc`: the commit rules (SPEC §3.3) depend on
//! whether a close comes from the process that opened the file, and whether that process is
//! being killed by a signal.

/// `PF_EXITING` in `/proc/PID/stat`'s flags: the task is in `do_exit`.
const PF_EXITING: u64 = 0x4;

/// The thread group (process id) of thread `pid`; `None` when unknown (pid 0: the request came
/// from another pid namespace, or the thread is gone).
pub(crate) fn thread_group(pid: u32) -> Option<u32> {
    if pid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|tgid| tgid.trim().parse().ok())
}

/// Whether thread `pid` is exiting because a signal killed it. Its files are closed while it
/// exits (the FLUSH comes from `do_exit`), after the kernel set `PF_EXITING` and the exit code
/// (the signal number in the low 7 bits, as `waitpid` reports it).
pub(crate) fn killed_by_signal(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| exiting_signal(&stat))
        .is_some()
}

/// The signal that is ending the task described by a `/proc/PID/stat` line, if any.
fn exiting_signal(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the
    // last ')'. There, index 0 is field 3 (state), flags is field 9, exit_code is field 52.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let flags: u64 = fields.get(6)?.parse().ok()?;
    let exit_code: u64 = fields.get(49)?.parse().ok()?;
    let signal = exit_code & 0x7f;
    (flags & PF_EXITING != 0 && signal != 0).then_some(signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(comm: &str, flags: u64, exit_code: u64) -> String {
        let mut fields = vec!["0".to_owned(); 50];
        fields[0] = "R".into();
        fields[6] = flags.to_string();
        fields[49] = exit_code.to_string();
        format!("1234 ({comm}) {}", fields.join(" "))
    }

    #[test]
    fn a_task_killed_by_a_signal_is_recognised() {
        assert_eq!(exiting_signal(&stat_line("writer", 0x404044, 9)), Some(9));
        // Exiting normally (exit status 3 is 3 << 8): commits.
        assert_eq!(exiting_signal(&stat_line("writer", 0x404044, 3 << 8)), None);
        // Not exiting at all.
        assert_eq!(exiting_signal(&stat_line("a) b (c", 0x400000, 0)), None);
        assert_eq!(exiting_signal("garbage"), None);
    }

    #[test]
    fn this_process_is_its_own_thread_group_and_alive() {
        let pid = std::process::id();
        assert_eq!(thread_group(pid), Some(pid));
        assert!(!killed_by_signal(pid));
        assert_eq!(thread_group(0), None);
    }
}
