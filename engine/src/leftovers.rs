//! Leftovers of runs that were killed: a run's folder being written into
//! the store (`runs/.tmp-<run_id>`), the scratch folders of a run under a
//! memory limit (`croo-scratch-*`) and the staging folders of a store in a
//! bucket (`croo-staging-*`), both in the temporary folder.
//!
//! Each such folder has an *owner file* beside it (`<folder>.owner`),
//! created and locked (an OS file lock, released by the kernel when the
//! process ends, however it ends) before the folder is created, and removed
//! after the folder is gone or committed. [`clean_store`] and
//! [`clean_temp`] (called at the start of every run and of `croo serve`)
//! remove the folders whose owner file is missing or not locked: their
//! process is gone. A folder whose owner is alive is never touched.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The lock on an owner file, held while its folder is written. Dropping
/// it removes the owner file (call it after the folder is gone or
/// committed).
#[derive(Debug)]
pub struct Owner {
    path: PathBuf,
    _file: File,
}

/// The owner file of `folder`.
pub fn owner_path(folder: &Path) -> PathBuf {
    let mut name = folder.file_name().unwrap_or_default().to_os_string();
    name.push(".owner");
    folder.with_file_name(name)
}

/// Creates and locks the owner file of `folder` (before `folder` itself is
/// created).
pub fn claim(folder: &Path) -> io::Result<Owner> {
    let path = owner_path(folder);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    file.try_lock().map_err(|e| match e {
        fs::TryLockError::Error(e) => e,
        fs::TryLockError::WouldBlock => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is owned by a running process", folder.display()),
        ),
    })?;
    Ok(Owner { path, _file: file })
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether the process that owned `folder` is gone: its owner file is
/// missing, or can be locked.
fn abandoned(folder: &Path) -> bool {
    let path = owner_path(folder);
    let Ok(file) = File::options().write(true).open(&path) else {
        return true;
    };
    match file.try_lock() {
        Ok(()) => true,
        Err(fs::TryLockError::WouldBlock) => false,
        // A file that cannot be locked at all: leave it.
        Err(fs::TryLockError::Error(_)) => false,
    }
}

/// Removes `folder` and its owner file, if the owner is gone; returns
/// whether it did.
fn remove_if_abandoned(folder: &Path) -> bool {
    if !abandoned(folder) {
        return false;
    }
    let removed = match fs::remove_dir_all(folder) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(folder = %folder.display(), error = %e, "cannot remove the leftover of a killed run");
            return false;
        }
    };
    let _ = fs::remove_file(owner_path(folder));
    removed
}

/// Folders in `dir` whose name starts with one of `prefixes` (owner files
/// not included), and owner files whose folder is gone.
fn candidates(dir: &Path, prefixes: &[&str]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut folders, mut owners) = (Vec::new(), Vec::new());
    let Ok(entries) = fs::read_dir(dir) else {
        return (folders, owners);
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let path = e.path();
        if let Some(folder) = name.strip_suffix(".owner") {
            if !dir.join(folder).exists() {
                owners.push(path);
            }
        } else if path.is_dir() {
            folders.push(path);
        }
    }
    (folders, owners)
}

fn clean(dir: &Path, prefixes: &[&str], what: &str) -> Vec<PathBuf> {
    let (folders, owners) = candidates(dir, prefixes);
    let mut removed = Vec::new();
    for f in folders {
        if remove_if_abandoned(&f) {
            tracing::warn!(folder = %f.display(), "removed the {what} of a killed run");
            removed.push(f);
        }
    }
    // An owner file whose folder never came (or was already removed), if
    // its process is gone.
    for o in owners {
        if let Ok(file) = File::options().write(true).open(&o)
            && file.try_lock().is_ok()
        {
            let _ = fs::remove_file(&o);
        }
    }
    removed
}

/// Removes the half-written run folders (`runs/.tmp-*`) of killed runs
/// from the results store `out`; returns them.
pub fn clean_store(out: &Path) -> Vec<PathBuf> {
    clean(&out.join("runs"), &[".tmp-"], "half-written run folder")
}

/// Removes the scratch and staging folders of killed runs from the
/// temporary folder; returns them.
pub fn clean_temp() -> Vec<PathBuf> {
    clean(
        &std::env::temp_dir(),
        &["croo-scratch-", "croo-staging-"],
        "scratch folder",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_removed_only_when_its_owner_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        fs::create_dir_all(&runs).unwrap();

        // Alive: owner locked by this process.
        let alive = runs.join(".tmp-alive");
        let owner = claim(&alive).unwrap();
        fs::create_dir(&alive).unwrap();
        fs::write(alive.join("results.parquet"), b"x").unwrap();

        // Killed after claiming: the owner file stays, unlocked.
        let killed = runs.join(".tmp-killed");
        fs::write(owner_path(&killed), b"").unwrap();
        fs::create_dir(&killed).unwrap();

        // No owner file at all (killed between removing it and the rename).
        let orphan = runs.join(".tmp-orphan");
        fs::create_dir(&orphan).unwrap();

        // A committed run is never a candidate.
        let done = runs.join("20261202T000000000Z-00000000");
        fs::create_dir(&done).unwrap();

        let mut removed = clean_store(dir.path());
        removed.sort();
        assert_eq!(removed, vec![killed.clone(), orphan.clone()]);
        assert!(alive.join("results.parquet").exists());
        assert!(owner_path(&alive).exists());
        assert!(!owner_path(&killed).exists());
        assert!(done.exists());

        // A second claim of a live folder fails; after drop, it is free.
        assert!(claim(&alive).is_err());
        drop(owner);
        assert!(!owner_path(&alive).exists());
        assert_eq!(clean_store(dir.path()), vec![alive]);
    }
}
