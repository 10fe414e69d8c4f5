//! A folder of formula files, as `croo check DIR` and `croo serve
//! --formulas DIR` see it: its `*.toml` files (not recursive, sorted), and
//! one name, one formula: two files that claim the same `[formula] name`
//! are refused together (serving either would describe, or run, the other
//! one's numbers).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::load::Loaded;

/// The formula files of a folder: its `*.toml` files but targets files
/// (`NAME.targets.toml`, `engine::targets`), sorted by path.
pub fn formula_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| !crate::targets::is_targets_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Two or more files claiming one formula name.
#[derive(Debug, Clone, PartialEq)]
pub struct Clash {
    pub name: String,
    /// Each file, with the line of its `name` and its version.
    pub files: Vec<(PathBuf, usize, String)>,
}

impl std::fmt::Display for Clash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files claim the formula name `{}`: ",
            self.files.len(),
            self.name
        )?;
        for (i, (path, line, version)) in self.files.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}:{line} (version {version})", path.display())?;
        }
        f.write_str(
            "; one name is one formula: give each its own name, or keep one version in the folder",
        )
    }
}

/// The names that more than one of `loaded` claims.
pub fn clashes<'a>(loaded: impl IntoIterator<Item = &'a Loaded>) -> Vec<Clash> {
    let mut by_name: BTreeMap<&str, Vec<&Loaded>> = BTreeMap::new();
    for l in loaded {
        by_name
            .entry(l.formula.file.name.value.as_str())
            .or_default()
            .push(l);
    }
    by_name
        .into_iter()
        .filter(|(_, ls)| ls.len() > 1)
        .map(|(name, ls)| Clash {
            name: name.to_string(),
            files: ls
                .iter()
                .map(|l| {
                    let line = l.file.line_col(l.formula.file.name.span.start).0;
                    (l.path.clone(), line, l.formula.file.version.value.clone())
                })
                .collect(),
        })
        .collect()
}
