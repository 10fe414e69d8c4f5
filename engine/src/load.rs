//! Reading a formula file: its text, checked, and the hash of its bytes.

use std::path::{Path, PathBuf};

use formulas::{Diagnostic, Formula, SourceFile};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A formula file read from disk and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub file: SourceFile,
    pub formula: Formula,
    /// Warnings found while checking (errors make [`load`] fail).
    pub warnings: Vec<Diagnostic>,
    /// `sha256:<hex>` of the file's bytes.
    pub hash: String,
}

impl Loaded {
    /// Directory relative source paths are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Reads and checks a formula file (no data is read).
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::User(format!(
            "cannot read formula file `{}`: {e}",
            path.display()
        ))
    })?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Error::User(format!("formula file `{}` is not UTF-8", path.display())))?;
    let file = SourceFile::new(path.display().to_string(), text);
    let (formula, diagnostics) = formulas::check(&file);
    let Some(formula) = formula else {
        return Err(Error::Formula {
            file: Box::new(file),
            diagnostics,
        });
    };
    Ok(Loaded {
        path: path.to_path_buf(),
        file,
        formula,
        warnings: diagnostics,
        hash: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
    })
}
