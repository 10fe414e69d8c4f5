//! `croo keys`: API keys. A key is printed once, when it is made; the keys
//! file keeps only its hash. Every change is written to the audit log.

use std::path::{Path, PathBuf};

use chrono::Utc;
use clap::Subcommand;

use crate::args::OutputFormat;
use crate::exit::{Failure, failure};
use crate::render;

#[derive(Subcommand)]
pub enum Command {
    /// Create a key, print it once, store only its hash.
    Add {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// Only these groups' numbers, e.g. --scope segment=smb (repeatable).
        #[arg(long, value_name = "DIMENSION=VALUE")]
        scope: Vec<String>,
        /// Results store whose audit log records the change.
        #[arg(long, default_value = "croo-results")]
        results: PathBuf,
        /// The formulas folder `croo serve` will read: a warning when no
        /// formula there has a dimension the scope names (such a key would
        /// see no numbers).
        #[arg(long)]
        formulas: Option<PathBuf>,
    },
    /// List keys (names, roles, scopes; never the keys).
    List {
        #[arg(long)]
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Revoke a key by name.
    Revoke {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// Results store whose audit log records the change.
        #[arg(long, default_value = "croo-results")]
        results: PathBuf,
    },
}

pub fn run(cmd: Command) -> Result<u8, Failure> {
    use api::keys::{KeysFile, parse_scope};
    let fail = Failure::from;
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let audit = |results: &Path, event: &str, name: &str, detail: String| -> Result<(), Failure> {
        let mut ev = api::audit::AuditEvent::new(event, "ok");
        ev.key = Some(name.to_string());
        ev.detail = Some(detail);
        api::audit::AuditLog::new(results).append(&ev).map_err(|e| {
            failure(format!(
                "writing the audit log in {}: {e}",
                results.display()
            ))
        })
    };
    match cmd {
        Command::Add {
            file,
            name,
            role,
            scope,
            results,
            formulas,
        } => {
            let role = role.parse().map_err(fail)?;
            let scope = parse_scope(&scope).map_err(fail)?;
            if let Some(dir) = &formulas {
                for w in scope_warnings(dir, &scope) {
                    eprintln!("warning: {w}");
                }
            }
            let mut f = KeysFile::read(&file).map_err(fail)?;
            let (key, record) = f.add(&name, role, scope, &now).map_err(fail)?;
            f.write(&file).map_err(fail)?;
            let scope_text = api::keys::describe_scope(&record.scope);
            audit(
                &results,
                "key.created",
                &name,
                format!(
                    "role {role}{}",
                    if scope_text.is_empty() {
                        String::new()
                    } else {
                        format!(", scope {scope_text}")
                    }
                ),
            )?;
            eprintln!("created key `{name}` ({role}); it is shown once, store it now:");
            println!("{key}");
            Ok(0)
        }
        Command::List { file, format } => {
            let f = KeysFile::read(&file).map_err(fail)?;
            if format == OutputFormat::Json {
                let list: Vec<_> = f
                    .keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "name": k.name, "role": k.role, "scope": k.scope,
                            "prefix": k.prefix, "created_at": k.created_at,
                            "revoked_at": k.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "keys": list }));
                return Ok(0);
            }
            let headers =
                render::headers(&["name", "role", "scope", "prefix", "created", "revoked"]);
            let rows: Vec<Vec<String>> = f
                .keys
                .iter()
                .map(|k| {
                    vec![
                        k.name.clone(),
                        k.role.to_string(),
                        api::keys::describe_scope(&k.scope),
                        format!("{}…", k.prefix),
                        k.created_at.clone(),
                        k.revoked_at.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            println!("{}", render::table(&headers, &rows));
            Ok(0)
        }
        Command::Revoke {
            file,
            name,
            results,
        } => {
            let mut f = KeysFile::read(&file).map_err(fail)?;
            f.revoke(&name, &now).map_err(fail)?;
            f.write(&file).map_err(fail)?;
            audit(&results, "key.revoked", &name, "revoked".into())?;
            eprintln!("revoked key `{name}`");
            Ok(0)
        }
    }
}

/// Dimensions of `scope` that no formula of the folder `dir` has.
fn scope_warnings(dir: &Path, scope: &api::keys::Scope) -> Vec<String> {
    let files = engine::folder::formula_files(dir).unwrap_or_default();
    let mut dims = std::collections::BTreeSet::new();
    for f in &files {
        if let Ok(l) = engine::load(f) {
            dims.extend(
                l.formula
                    .file
                    .dimensions
                    .iter()
                    .map(|d| d.name.value.clone()),
            );
        }
    }
    scope
        .keys()
        .filter(|d| !dims.contains(*d))
        .map(|d| {
            format!(
                "no formula in {} has a dimension `{d}` (dimensions there: {}): this key would see no numbers",
                dir.display(),
                if dims.is_empty() {
                    "none".to_string()
                } else {
                    dims.iter().cloned().collect::<Vec<_>>().join(", ")
                }
            )
        })
        .collect()
}
