//! PostgreSQL sources through `datafusion-table-providers`.
//!
//! `postgres://user@host:port/db?table=schema.name`, or `?query=SELECT ...`
//! (URL-encoded) for a source that is the result of a query. The password comes from
//! `PGPASSWORD` or a password file (`PGPASSFILE`, else `~/.pgpass`, in
//! libpq's format), never from the formula file: a URI with a password is
//! refused. `sslmode` (URI, else `PGSSLMODE`, else libpq's `prefer`) and
//! `sslrootcert` are honoured. The table provider sends PostgreSQL the
//! projection and every filter it can render (the period's time range, the
//! measures' filters), so only the rows a run needs cross the wire.
//!
//! A `query=` source is sent as `WITH croo_query AS (<query>) SELECT <columns>
//! FROM croo_query WHERE <filters>`: PostgreSQL inlines the CTE, so the same
//! filters reach the tables the query reads. Its column types come from
//! PostgreSQL's description of the prepared statement; a column of a type
//! croo cannot read is an error that names it (cast it in the query).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::prelude::SessionContext;
use datafusion_table_providers::postgres::{DynPostgresConnectionPool, PostgresTableFactory};
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use datafusion_table_providers::util::secrets::to_secret_map;
use url::Url;

use crate::{Error, Result, SourceSpec, source_err};

mod query;

/// A parsed source URI, without any secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub db: String,
    pub relation: Relation,
    pub sslmode: String,
    pub sslrootcert: Option<String>,
}

/// What a PostgreSQL source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// `table=schema.name` (a table or a view).
    Table(String),
    /// `query=SELECT ...`: the rows of a query.
    Query(String),
}

const PARAMS: &[&str] = &["table", "query", "sslmode", "sslrootcert"];

/// Parses the URI of a PostgreSQL source; the error is the user's to fix.
pub fn parse(uri: &str) -> std::result::Result<PgUri, String> {
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not a valid URL: {e}"))?;
    if url.password().is_some() {
        return Err(
            "the URI contains a password: put it in PGPASSWORD or a password file (PGPASSFILE, ~/.pgpass), never in the formula file"
                .into(),
        );
    }
    let mut table = None;
    let mut query = None;
    let mut sslmode = None;
    let mut sslrootcert = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "table" => table = Some(v.to_string()),
            "query" => query = Some(v.to_string()),
            "sslmode" => sslmode = Some(v.to_string()),
            "sslrootcert" => sslrootcert = Some(v.to_string()),
            other => {
                return Err(format!(
                    "unknown URI parameter `{other}` (expected one of {})",
                    PARAMS.join(", ")
                ));
            }
        }
    }
    let relation = match (table.filter(|t| !t.is_empty()), query) {
        (Some(_), Some(_)) => {
            return Err("give either `table=` or `query=`, not both".into());
        }
        (Some(t), None) => Relation::Table(t),
        (None, Some(q)) => {
            let q = q.trim().trim_end_matches(';').trim_end();
            if q.is_empty() {
                return Err("`query=` is empty".into());
            }
            Relation::Query(q.to_string())
        }
        (None, None) => {
            return Err(format!(
                "`{uri}` names no table: add `?table=schema.name` (or `?query=SELECT ...`, URL-encoded)"
            ));
        }
    };
    let user = match url.username() {
        "" => std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()),
        u => percent_decode("user name", u)?,
    };
    let db = match url.path().trim_matches('/') {
        "" => user.clone(),
        d => percent_decode("database name", d)?,
    };
    let sslmode = sslmode
        .or_else(|| std::env::var("PGSSLMODE").ok())
        .unwrap_or_else(|| "prefer".into())
        .to_ascii_lowercase();
    if !["disable", "prefer", "require", "verify-ca", "verify-full"].contains(&sslmode.as_str()) {
        return Err(format!(
            "sslmode `{sslmode}` is not one of disable, prefer, require, verify-ca, verify-full"
        ));
    }
    Ok(PgUri {
        host: url
            .host_str()
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .trim_matches(['[', ']'])
            .to_string(),
        port: url.port().unwrap_or(5432),
        user,
        db,
        relation,
        sslmode,
        sslrootcert,
    })
}

/// The text a URI's user or path part stands for: `%XX` decoded, `+`
/// kept (`+` means a space only in query strings, not in these parts).
fn percent_decode(what: &str, s: &str) -> std::result::Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|t| t.into_owned())
        .map_err(|_| format!("the {what} `{s}` is not UTF-8 once percent-decoded"))
}

/// The password for `pg`: `PGPASSWORD`, else the first matching line of
/// the password file (`host:port:database:username:password`, `*`
/// matching anything, `\:` and `\\` escaped).
pub fn password(pg: &PgUri) -> Option<String> {
    if let Ok(p) = std::env::var("PGPASSWORD") {
        return Some(p);
    }
    let file = std::env::var("PGPASSFILE")
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    password_from_file(&text, pg)
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

pub(crate) fn password_from_file(text: &str, pg: &PgUri) -> Option<String> {
    let port = pg.port.to_string();
    let wanted = [
        pg.host.as_str(),
        port.as_str(),
        pg.db.as_str(),
        pg.user.as_str(),
    ];
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(split_pgpass)
        .find(|f| {
            f.len() == 5
                && f.iter()
                    .zip(wanted)
                    .all(|(have, want)| have == "*" || have == want)
        })
        .map(|f| f[4].clone())
}

/// Registers table `table` of the PostgreSQL source in `ctx`.
pub(crate) async fn register(
    ctx: &SessionContext,
    table: &str,
    spec: &SourceSpec<'_>,
) -> Result<SchemaRef> {
    let pg = parse(spec.uri).map_err(|m| source_err(spec, m))?;
    let mut params = HashMap::from([
        ("host".to_string(), pg.host.clone()),
        ("port".to_string(), pg.port.to_string()),
        ("user".to_string(), pg.user.clone()),
        ("db".to_string(), pg.db.clone()),
        ("sslmode".to_string(), pg.sslmode.clone()),
        ("connection_pool_size".to_string(), "4".to_string()),
        ("application_name".to_string(), "croo".to_string()),
        // Every session in UTC, whatever the server's `timezone`: the
        // pushed-down time range is rendered as `CAST('...+00:00' AS
        // TIMESTAMP)` (DataFusion's unparser drops the zone), and naive
        // `timestamp` columns are instants in UTC for croo; both are read
        // in the session's zone by PostgreSQL.
        ("options".to_string(), "-c TimeZone=UTC".to_string()),
    ]);
    if let Some(cert) = &pg.sslrootcert {
        params.insert("sslrootcert".into(), cert.clone());
    }
    if let Some(pw) = password(&pg) {
        params.insert("pass".into(), pw);
    }
    let server = format!("{}:{}/{}", pg.host, pg.port, pg.db);
    let pool = PostgresConnectionPool::new(to_secret_map(params))
        .await
        .map_err(|e| {
            source_err(
                spec,
                format!(
                    "cannot connect to PostgreSQL at {server} as `{}`: {e}",
                    pg.user
                ),
            )
        })?;
    let provider: Arc<dyn TableProvider> = match &pg.relation {
        Relation::Table(name) => PostgresTableFactory::new(Arc::new(pool))
            .table_provider(TableReference::parse_str(name))
            .await
            .map_err(|e| {
                source_err(spec, format!("cannot read table `{name}` on {server}: {e}"))
            })?,
        Relation::Query(query) => {
            let pool: Arc<DynPostgresConnectionPool> = Arc::new(pool);
            Arc::new(
                query::QueryTable::new(query, pool)
                    .await
                    .map_err(|e| source_err(spec, format!("`query=` on {server}: {e}")))?,
            )
        }
    };
    let schema = provider.schema();
    ctx.register_table(table, provider)
        .map_err(|error| Error::Read {
            source_name: spec.name.to_string(),
            error,
        })?;
    Ok(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_source_uri() {
        let pg =
            parse("postgres://finance@db.internal:5433/crm?table=sales.orders&sslmode=require")
                .unwrap();
        assert_eq!(pg.host, "db.internal");
        assert_eq!(pg.port, 5433);
        assert_eq!(pg.user, "finance");
        assert_eq!(pg.db, "crm");
        assert_eq!(pg.relation, Relation::Table("sales.orders".into()));
        assert_eq!(pg.sslmode, "require");
    }

    /// `+` is a plus sign in a URI's user and path (only query strings
    /// use it for a space); `%XX` is decoded.
    #[test]
    fn user_and_database_names_are_percent_decoded() {
        let pg = parse("postgres://fin+ance@db/crm+eu?table=t").unwrap();
        assert_eq!(pg.user, "fin+ance");
        assert_eq!(pg.db, "crm+eu");
        let pg = parse("postgres://fin%2Bance%20x@db/a%2Fb?table=t").unwrap();
        assert_eq!(pg.user, "fin+ance x");
        assert_eq!(pg.db, "a/b");
        assert!(parse("postgres://%FF@db/crm?table=t").is_err());
    }

    #[test]
    fn parses_a_query_source() {
        let pg = parse(
            "postgres://finance@db/crm?query=SELECT%20id%2C%20amount%20FROM%20sales.orders%20WHERE%20amount%20%3E%200%3B",
        )
        .unwrap();
        assert_eq!(
            pg.relation,
            Relation::Query("SELECT id, amount FROM sales.orders WHERE amount > 0".into())
        );
        let e = parse("postgres://u@h/db?table=t&query=SELECT%201").unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = parse("postgres://u@h/db?query=%20%3B").unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn refuses_passwords_unknown_parameters_and_missing_tables() {
        let e = parse("postgres://u:secret@h/db?table=t").unwrap_err();
        assert!(e.contains("PGPASSWORD"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let e = parse("postgres://u@h/db?table=t&sslmod=disable").unwrap_err();
        assert!(e.contains("`sslmod`"), "{e}");
        let e = parse("postgres://u@h/db").unwrap_err();
        assert!(e.contains("?table="), "{e}");
        let e = parse("postgres://u@h/db?table=t&sslmode=sometimes").unwrap_err();
        assert!(e.contains("sometimes"), "{e}");
    }

    #[test]
    fn password_file_lines_match_with_wildcards_and_escapes() {
        let pg = parse("postgres://finance@db:5432/crm?table=t&sslmode=disable").unwrap();
        let file = "# comment\nother:5432:crm:finance:nope\n*:5432:crm:fin\\:ance:no\ndb:*:crm:finance:pa\\:ss\n*:*:*:*:last\n";
        assert_eq!(password_from_file(file, &pg).as_deref(), Some("pa:ss"));
        assert_eq!(
            password_from_file("*:*:*:*:any", &pg).as_deref(),
            Some("any")
        );
        assert_eq!(password_from_file("db:5432:other:finance:x", &pg), None);
    }
}
