//! Who publishes and from what: the OS user, and the formula file's git
//! commit when it lives in a git repository (read with the `git` command;
//! without it, or outside a repository, there is none).

use std::path::Path;
use std::process::Command;

use crate::editions::Git;

/// The OS user running croo (`USER`, `LOGNAME`, `USERNAME`), else
/// `unknown`.
pub fn os_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The commit checked out in the repository holding `file`, and whether
/// the file differs from it (modified, or not committed at all).
pub fn git(file: &Path) -> Option<Git> {
    let file = std::fs::canonicalize(file).ok()?;
    let dir = file.parent()?;
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = run(&["rev-parse", "--verify", "-q", "HEAD"])?;
    if commit.is_empty() {
        return None;
    }
    let name = file.file_name()?.to_string_lossy().to_string();
    // Any status line (modified, added, untracked) means the file is not
    // exactly what the commit holds.
    let status = run(&["status", "--porcelain", "--", &name])?;
    Some(Git {
        commit,
        dirty: !status.is_empty(),
    })
}
