//! API keys: a JSON file of hashed keys, each with a role and optionally the
//! dimension values it may see.
//!
//! A key is `croo_` followed by 64 hex digits: 256 bits from the operating
//! system's CSPRNG (through `rand`'s thread generator). The file stores only
//! `sha256(key)`: with 256 random bits a fast hash is as safe as a slow one
//! (there is no dictionary to try). Keys are compared by hashing the
//! presented key and comparing digests in constant time against every
//! stored hash, so timing reveals neither which key matched nor how much.

use std::collections::BTreeMap;
use std::fs;

use std::path::Path;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;

/// What a key may do. Each role includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads scores, explanations, formulas and runs.
    Viewer,
    /// Also starts runs.
    Operator,
    /// Also reads the audit log.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(Error::Invalid(format!(
                "unknown role `{other}` (roles: viewer, operator, admin)"
            ))),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// Dimension -> the values a key may see. Empty: everything.
pub type Scope = BTreeMap<String, Vec<String>>;

/// One key as stored: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scope: Scope,
    /// `sha256:<hex>` of the key.
    pub hash: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The keys file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeysFile {
    pub keys: Vec<KeyRecord>,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// `sha256:<hex>` of a key.
pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// A scope as text: `segment=smb|mid,region=north` (empty: everything).
pub fn describe_scope(scope: &Scope) -> String {
    scope
        .iter()
        .map(|(d, vs)| format!("{d}={}", vs.join("|")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `DIM=VALUE` arguments into a scope.
pub fn parse_scope(items: &[String]) -> Result<Scope, Error> {
    let mut scope = Scope::new();
    for item in items {
        let (d, v) = item
            .split_once('=')
            .filter(|(d, v)| !d.is_empty() && !v.is_empty())
            .ok_or_else(|| Error::Invalid(format!("--scope `{item}` is not DIMENSION=VALUE")))?;
        let values = scope.entry(d.to_string()).or_default();
        if !values.iter().any(|x| x == v) {
            values.push(v.to_string());
        }
    }
    Ok(scope)
}

impl KeysFile {
    /// Reads a keys file; a missing file is an empty one.
    pub fn read(path: &Path) -> Result<Self, Error> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Invalid(format!("{} is not a croo keys file: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Writes the file atomically and durably, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Invalid(format!("encoding keys: {e}")))?;
        engine::durable::replace_file(path, &json, engine::durable::Access::Owner)
            .map_err(io(format!("writing {}", path.display())))
    }

    /// Creates a key; returns it (shown once) and its record.
    pub fn add(
        &mut self,
        name: &str,
        role: Role,
        scope: Scope,
        now: &str,
    ) -> Result<(String, KeyRecord), Error> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !valid {
            return Err(Error::Invalid(format!(
                "key name `{name}`: use 1 to 64 letters, digits, `-`, `_`, `.` or `@`"
            )));
        }
        if self.active().any(|k| k.name == name) {
            return Err(Error::Invalid(format!(
                "a key named `{name}` exists; revoke it first or choose another name"
            )));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key = format!("croo_{}", hex::encode(bytes));
        let record = KeyRecord {
            name: name.to_string(),
            role,
            scope,
            hash: hash_key(&key),
            prefix: key[..9].to_string(),
            created_at: now.to_string(),
            revoked_at: None,
        };
        self.keys.push(record.clone());
        Ok((key, record))
    }

    /// Revokes the active key called `name`.
    pub fn revoke(&mut self, name: &str, now: &str) -> Result<KeyRecord, Error> {
        let k = self
            .keys
            .iter_mut()
            .find(|k| k.name == name && k.revoked_at.is_none())
            .ok_or_else(|| Error::Invalid(format!("no active key named `{name}`")))?;
        k.revoked_at = Some(now.to_string());
        Ok(k.clone())
    }

    /// Keys that are not revoked.
    pub fn active(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.iter().filter(|k| k.revoked_at.is_none())
    }

    /// The active key matching `presented`, compared in constant time
    /// against every stored hash.
    pub fn verify(&self, presented: &str) -> Option<&KeyRecord> {
        let digest = Sha256::digest(presented.as_bytes());
        let mut found = None;
        for k in self.active() {
            let stored = k
                .hash
                .strip_prefix("sha256:")
                .and_then(|h| hex::decode(h).ok())
                .unwrap_or_default();
            let same: bool = if stored.len() == digest.len() {
                stored.as_slice().ct_eq(digest.as_slice()).into()
            } else {
                false
            };
            if same && found.is_none() {
                found = Some(k);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_hashed_and_verified() {
        let mut f = KeysFile::default();
        let (a, ra) = f.add("alice", Role::Viewer, Scope::new(), "t").unwrap();
        let (b, _) = f.add("bob", Role::Admin, Scope::new(), "t").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("croo_") && a.len() == 5 + 64);
        assert_eq!(ra.hash, hash_key(&a));
        assert!(!serde_json::to_string(&f).unwrap().contains(&a[5..]));
        assert_eq!(f.verify(&a).unwrap().name, "alice");
        assert_eq!(f.verify(&b).unwrap().name, "bob");
        assert!(f.verify("croo_wrong").is_none());
        assert!(f.verify("").is_none());
        f.revoke("alice", "t2").unwrap();
        assert!(f.verify(&a).is_none());
        assert!(f.revoke("alice", "t3").is_err());
    }

    #[test]
    fn names_and_scopes_are_validated() {
        let mut f = KeysFile::default();
        assert!(f.add("", Role::Viewer, Scope::new(), "t").is_err());
        assert!(f.add("a b", Role::Viewer, Scope::new(), "t").is_err());
        f.add("a", Role::Viewer, Scope::new(), "t").unwrap();
        assert!(f.add("a", Role::Viewer, Scope::new(), "t").is_err());
        let s = parse_scope(&["segment=smb".into(), "segment=mid".into()]).unwrap();
        assert_eq!(s["segment"], vec!["smb", "mid"]);
        assert!(parse_scope(&["segment".into()]).is_err());
        assert!(parse_scope(&["=x".into()]).is_err());
        assert!("boss".parse::<Role>().is_err());
    }
}
