//! The server configuration file (`croo serve --config FILE`, TOML): every
//! flag of `croo serve` under its own name (`results`, `formulas`, `keys`,
//! `bind`, `insecure`, `threads`, `memory_limit`, `key_rate`,
//! `denied_rate`), `[[schedules]]` and `[[alerts]]`. A flag given on the command line
//! wins over the file. [`read`] is the entry point.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::alerts::{Alert, AlertFile};
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
    #[serde(default)]
    pub alerts: Vec<AlertFile>,
}

/// A configuration file, read and checked.
#[derive(Debug)]
pub struct Read {
    pub file: ServeFile,
    pub schedules: Vec<Schedule>,
    pub alerts: Vec<Alert>,
}

/// The configuration file, read and checked: relative paths resolve
/// against the file's folder, schedules are parsed (every problem names
/// the file and the entry).
pub fn read(path: &Path) -> Result<Read, Error> {
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
    let mut alerts: Vec<Alert> = Vec::new();
    for (i, a) in file.alerts.iter().enumerate() {
        let at = format!("{}: [[alerts]] entry {}", path.display(), i + 1);
        let a = a.check(&at, base)?;
        if alerts.iter().any(|o| o.name == a.name) {
            return Err(Error::Invalid(format!(
                "{at}: a second alert named `{}`",
                a.name
            )));
        }
        alerts.push(a);
    }
    Ok(Read {
        file,
        schedules,
        alerts,
    })
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
        let Read {
            file: f,
            schedules: s,
            ..
        } = read(&path).unwrap();
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
        // Alerts: one rule, a webhook URL, a secret.
        std::fs::write(dir.path().join("secret"), "0123456789abcdef0123\n").unwrap();
        for (entry, says) in [
            (
                "webhook = \"http://h/x\"\nsecret_file = \"secret\"\n",
                "give one rule",
            ),
            (
                "drops_by = 1.0\nstatus_becomes = \"x\"\nwebhook = \"http://h/x\"\nsecret_file = \"secret\"\n",
                "give one rule",
            ),
            (
                "drops_by = -1.0\nwebhook = \"http://h/x\"\nsecret_file = \"secret\"\n",
                "0 or more",
            ),
            (
                "drops_by = 1.0\nwebhook = \"ftp://h/x\"\nsecret_file = \"secret\"\n",
                "http or https",
            ),
            (
                "drops_by = 1.0\nwebhook = \"http://h/x\"\n",
                "signing secret",
            ),
            (
                "drops_by = 1.0\nwebhook = \"http://h/x\"\nsecret_env = \"CROO_NO_SUCH_VARIABLE\"\n",
                "not set",
            ),
            (
                "drops_by = 1.0\ngroup = \"segment\"\nwebhook = \"http://h/x\"\nsecret_file = \"secret\"\n",
                "DIMENSION=VALUE",
            ),
        ] {
            std::fs::write(
                &path,
                format!("[[alerts]]\nname = \"a\"\nformula = \"f\"\n{entry}"),
            )
            .unwrap();
            let e = read(&path).unwrap_err().to_string();
            assert!(
                e.contains("[[alerts]] entry 1") && e.contains(says),
                "{entry}: {e}"
            );
        }
        std::fs::write(
            &path,
            "[[alerts]]\nname = \"a\"\nformula = \"f\"\ndrops_by = 2.5\nwebhook = \"https://h/x\"\nsecret_file = \"secret\"\n",
        )
        .unwrap();
        let r = read(&path).unwrap();
        assert_eq!(r.alerts[0].rule, crate::alerts::Rule::DropsBy(2.5));
    }
}
