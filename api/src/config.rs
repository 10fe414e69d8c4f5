//! The server configuration file (`croo serve --config FILE`, TOML): every
//! flag of `croo serve` under its own name (`results`, `formulas`, `keys`,
//! `bind`, `insecure`, `threads`, `memory_limit`, `key_rate`,
//! `denied_rate`), and `[[schedules]]`. A flag given on the command line
//! wins over the file. [`read`] is the entry point.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;
use crate::schedules::{Schedule, ScheduleFile};

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub results: Option<PathBuf>,
    pub formulas: Option<PathBuf>,
    pub keys: Option<PathBuf>,
    pub bind: Option<std::net::SocketAddr>,
    pub insecure: Option<bool>,
    pub threads: Option<usize>,
    pub memory_limit: Option<String>,
    pub key_rate: Option<u32>,
    pub denied_rate: Option<u32>,
    #[serde(default)]
    pub schedules: Vec<ScheduleFile>,
}

/// The configuration file, read and checked: relative paths resolve
/// against the file's folder, schedules are parsed (every problem names
/// the file and the entry).
pub fn read(path: &Path) -> Result<(ServeFile, Vec<Schedule>), Error> {
    // A configuration that cannot be read is the operator's to fix (exit 1).
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))?;
    let mut file: ServeFile =
        toml::from_str(&text).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [&mut file.results, &mut file.formulas, &mut file.keys]
        .into_iter()
        .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    let mut schedules: Vec<Schedule> = Vec::new();
    for (i, s) in file.schedules.iter().enumerate() {
        let at = format!("{}: [[schedules]] entry {}", path.display(), i + 1);
        let s = s.check(&at)?;
        if schedules.iter().any(|o| o.name == s.name) {
            return Err(Error::Invalid(format!(
                "{at}: a second schedule named `{}` (give each a `name`)",
                s.name
            )));
        }
        schedules.push(s);
    }
    if !schedules.is_empty() && file.formulas.is_none() {
        return Err(Error::Invalid(format!(
            "{}: schedules run formulas of the formulas folder: set `formulas`",
            path.display()
        )));
    }
    Ok((file, schedules))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_every_flag_and_schedules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(
            &path,
            r#"
results = "store"
formulas = "formulas"
bind = "127.0.0.1:9000"
threads = 2
memory_limit = "1GiB"
key_rate = 100
denied_rate = 5
insecure = false

[[schedules]]
name = "hub"
formula = "retail-croo"
cron = "*/15 * * * *"
run = "current"

[[schedules]]
formula = "retail-croo"
cron = "0 6 * * *"
time_zone = "Europe/Berlin"
run = "last-complete"
lookback = 2
"#,
        )
        .unwrap();
        let (f, s) = read(&path).unwrap();
        assert_eq!(f.results, Some(dir.path().join("store")));
        assert_eq!(f.threads, Some(2));
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].name, "retail-croo-last-complete");
        assert_eq!(s[1].lookback, 2);
    }

    #[test]
    fn mistakes_name_the_file_and_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        let missing = read(&dir.path().join("nope.toml")).unwrap_err();
        assert!(missing.is_user_error() && missing.to_string().contains("nope.toml"));
        std::fs::write(&path, "resultz = \"x\"\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("serve.toml") && e.contains("resultz"), "{e}");
        std::fs::write(
            &path,
            "formulas = \"f\"\n[[schedules]]\nformula = \"a\"\ncron = \"every day\"\nrun = \"current\"\n",
        )
        .unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("entry 1") && e.contains("every day"), "{e}");
    }
}
