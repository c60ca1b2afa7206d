//! Transparent huge pages for the rows, compact copy and graph of large
//! collections.
//!
//! A graph walk reads scattered rows of the compact copy, the links and the
//! vectors: at a million rows these span hundreds of megabytes, and with
//! 4 KiB pages nearly every row read also misses the TLB. Linux's default
//! (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise`) gives 2 MiB
//! pages only to memory that asks for them. The C allocator of glibc 2.35
//! and later asks for its heap when started with
//! `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`; a tunable is read only as a
//! process starts, so [`restart_with_huge_pages`] starts the process again
//! (the same program, arguments and process id) with it set. Memory
//! placement never changes what is computed.

/// The tunable that makes glibc's allocator advise huge pages.
pub const TUNABLE: &str = "glibc.malloc.hugetlb=1";

/// Set to `off` to run without the restart.
pub const ENV_SWITCH: &str = "VALORI_HUGE_PAGES";

/// Set in the restarted process, which never restarts again: glibc may
/// rewrite `GLIBC_TUNABLES` as it reads it (2.36 keeps only the first of
/// several tunables in the variable while applying them all), so the
/// variable alone cannot tell that the restart happened.
pub const ENV_RESTARTED: &str = "VALORI_HUGE_PAGES_RESTARTED";

/// What `GLIBC_TUNABLES` should be to have huge pages, given its current
/// value, or `None` when nothing is to change: the process is the
/// restarted one, the tunable is already there (the user chose a
/// `hugetlb` setting), or the switch is `off`.
pub fn tunables_for(
    current: Option<&str>,
    switch: Option<&str>,
    restarted: bool,
) -> Option<String> {
    if restarted || switch.is_some_and(|s| s.eq_ignore_ascii_case("off")) {
        return None;
    }
    match current {
        Some(t) if t.contains("glibc.malloc.hugetlb") => None,
        Some(t) if !t.is_empty() => Some(format!("{t}:{TUNABLE}")),
        _ => Some(TUNABLE.to_owned()),
    }
}

/// On Linux with glibc, replaces the process with the same program and
/// arguments, `GLIBC_TUNABLES` extended with [`TUNABLE`], unless
/// [`tunables_for`] says nothing is to change. Call it first thing in
/// `main`, before any thread starts. Returns only when no restart was
/// made or it failed (the process then goes on as it is).
pub fn restart_with_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var("GLIBC_TUNABLES").ok();
        let switch = std::env::var(ENV_SWITCH).ok();
        let restarted = std::env::var_os(ENV_RESTARTED).is_some();
        let Some(tunables) = tunables_for(current.as_deref(), switch.as_deref(), restarted) else {
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| "valori".into());
        // `exec` returns only on failure.
        let _ = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .env(ENV_RESTARTED, "1")
            .exec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunable_is_added_once_and_the_switch_turns_it_off() {
        assert_eq!(tunables_for(None, None, false).as_deref(), Some(TUNABLE));
        assert_eq!(
            tunables_for(Some(""), None, false).as_deref(),
            Some(TUNABLE)
        );
        assert_eq!(
            tunables_for(Some("glibc.malloc.arena_max=2"), None, false).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
        );
        // The restarted process, whatever glibc left in the variable.
        assert_eq!(
            tunables_for(Some("glibc.malloc.arena_max=2"), None, true),
            None
        );
        // The user's own value, and the switch.
        assert_eq!(
            tunables_for(Some("glibc.malloc.hugetlb=0"), None, false),
            None
        );
        assert_eq!(tunables_for(None, Some("off"), false), None);
        assert_eq!(
            tunables_for(None, Some("on"), false).as_deref(),
            Some(TUNABLE)
        );
    }
}
