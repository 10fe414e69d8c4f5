//! Transparent huge pages for the allocator's memory, on Linux with glibc.
//!
//! A run's time goes largely to hash tables (grouping, joins) that are read
//! at random and to fresh memory the kernel clears page by page. With
//! glibc's `glibc.malloc.hugetlb=1` tunable, malloc asks the kernel for
//! transparent huge pages (`madvise(MADV_HUGEPAGE)`) on the memory it maps,
//! which on a system whose THP mode is `madvise` (Debian's and Ubuntu's
//! default) cuts page faults and TLB misses: measured on the 450k-customer
//! sample, 2 threads, about 8-15% less wall time and a third less system
//! time (benches/README.md, figures of 2026-11-24).
//!
//! glibc reads its tunables once, when the process starts, so the only way
//! to set one is in the environment of a fresh process: `croo` re-executes
//! itself, once, with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` added. It does
//! not when `GLIBC_TUNABLES` is already set (the user's choice wins, and it
//! also marks the re-executed process), when `CROO_HUGEPAGES=0`, or when the
//! re-execution fails (the run goes on as it is).

/// The variable that turns the re-execution off (`0`, `off`, `false`).
pub const SWITCH: &str = "CROO_HUGEPAGES";
const TUNABLES: &str = "GLIBC_TUNABLES";
const VALUE: &str = "glibc.malloc.hugetlb=1";

/// Whether to re-execute, given the two variables' values.
fn wanted(tunables: Option<&std::ffi::OsStr>, switch: Option<&std::ffi::OsStr>) -> bool {
    if tunables.is_some() {
        return false;
    }
    !matches!(
        switch
            .and_then(|s| s.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("0" | "off" | "false" | "no")
    )
}

/// Re-executes the current binary with huge pages on, when it should;
/// returns only when it does not (or cannot).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn reexec() {
    use std::os::unix::process::CommandExt;
    if !wanted(
        std::env::var_os(TUNABLES).as_deref(),
        std::env::var_os(SWITCH).as_deref(),
    ) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // `exec` returns only on failure; the run then goes on without.
    let _ = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(TUNABLES, VALUE)
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn reexec() {}

#[cfg(test)]
mod tests {
    use super::wanted;
    use std::ffi::OsStr;

    #[test]
    fn reexecutes_only_without_tunables_and_unless_switched_off() {
        assert!(wanted(None, None));
        assert!(wanted(None, Some(OsStr::new("1"))));
        assert!(!wanted(Some(OsStr::new("glibc.malloc.hugetlb=0")), None));
        assert!(!wanted(Some(OsStr::new("")), None));
        for off in ["0", "off", "OFF", "false", "no"] {
            assert!(!wanted(None, Some(OsStr::new(off))), "{off}");
        }
    }
}
