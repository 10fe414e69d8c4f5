//! Object stores: `s3://`, `gs://` and `az://` URLs through the
//! `object_store` crate DataFusion itself uses.
//!
//! Credentials, region and endpoint come from the usual environment
//! variables of each cloud (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` for S3-compatible
//! stores; `GOOGLE_SERVICE_ACCOUNT`/`GOOGLE_APPLICATION_CREDENTIALS`;
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...), never
//! from the formula file. An `http://` endpoint is allowed when one is set
//! explicitly (a store on loopback).

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use url::Url;

use crate::layout::{
    Layout, dot_extension, extension_of, format_of, has_glob, hidden, partition_columns, wanted,
};
use crate::{FileFingerprint, Result, SourceSpec, source_err};

const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

/// Whether `uri` names an object in an object store this build reads.
pub fn is_object_store_uri(uri: &str) -> bool {
    uri.split_once("://")
        .is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// Parses an object store URL, naming `what` in the error.
pub fn parse_url(uri: &str) -> std::result::Result<Url, String> {
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not a valid URL: {e}"))?;
    if !SCHEMES.contains(&url.scheme()) {
        return Err(format!(
            "`{uri}`: unsupported scheme `{}` (expected one of s3, gs, az)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{uri}` names no bucket or container"));
    }
    Ok(url)
}

/// The store's root (`scheme://bucket`), the key DataFusion's object store
/// registry uses.
pub fn store_root(url: &Url) -> Url {
    let mut root = url.clone();
    root.set_path("");
    root.set_query(None);
    root.set_fragment(None);
    root
}

/// The object path inside the bucket (no leading or trailing `/`).
pub fn object_path(url: &Url) -> std::result::Result<ObjectPath, String> {
    ObjectPath::from_url_path(url.path()).map_err(|e| format!("`{url}`: {e}"))
}

/// Builds the client for the bucket of `url` from the environment.
pub fn store_for(url: &Url) -> std::result::Result<Arc<dyn ObjectStore>, String> {
    let root = store_root(url);
    let built: object_store::Result<Arc<dyn ObjectStore>> = match url.scheme() {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(root.as_str());
            let plain_http = b
                .get_config_value(&AmazonS3ConfigKey::Endpoint)
                .is_some_and(|e| e.starts_with("http://"));
            if plain_http {
                b = b.with_allow_http(true);
            }
            b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        "gs" => GoogleCloudStorageBuilder::from_env()
            .with_url(root.as_str())
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        _ => MicrosoftAzureBuilder::from_env()
            .with_url(root.as_str())
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
    };
    built.map_err(|e| format!("cannot open `{root}`: {e}"))
}

/// The objects below `prefix`, sorted by path.
pub async fn list(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
) -> object_store::Result<Vec<ObjectMeta>> {
    let mut metas: Vec<ObjectMeta> = store.list(Some(prefix)).try_collect().await?;
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(metas)
}

fn relative<'a>(location: &'a ObjectPath, prefix: &ObjectPath) -> &'a str {
    let loc = location.as_ref();
    let pre = prefix.as_ref();
    loc.strip_prefix(pre)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(loc)
}

/// Finds what the source URL names: one object, or a prefix (directory)
/// of data files, or a glob.
pub(crate) async fn layout(
    spec: &SourceSpec<'_>,
    store: &dyn ObjectStore,
    url: &Url,
) -> Result<Layout> {
    let uri = spec.uri;
    let one = |uri: &str| -> Result<Layout> {
        Ok(Layout {
            table_path: uri.to_string(),
            format: format_of(spec, uri)?,
            extension: dot_extension(uri),
            partitions: Vec::new(),
        })
    };
    if has_glob(uri) {
        return one(uri);
    }
    let path = object_path(url).map_err(|m| source_err(spec, m))?;
    match store.head(&path).await {
        Ok(_) => return one(uri),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(source_err(spec, format!("cannot read `{uri}`: {e}"))),
    }
    let metas = list(store, &path)
        .await
        .map_err(|e| source_err(spec, format!("cannot list `{uri}`: {e}")))?;
    let data: Vec<&ObjectMeta> = metas
        .iter()
        .filter(|m| {
            let rel = relative(&m.location, &path);
            !hidden(rel) && wanted(extension_of(rel).as_deref(), spec.format)
        })
        .collect();
    let Some(first) = data.first() else {
        return Err(source_err(
            spec,
            if metas.is_empty() {
                format!("no object or prefix at `{uri}`")
            } else {
                format!("no data files below `{uri}`")
            },
        ));
    };
    let rel = relative(&first.location, &path);
    let format = format_of(spec, rel)?;
    let mut table_path = uri.to_string();
    if !table_path.ends_with('/') {
        table_path.push('/');
    }
    Ok(Layout {
        table_path,
        format,
        extension: dot_extension(rel),
        partitions: partition_columns(rel),
    })
}

/// Size and modification time of every object behind an object store
/// source, in path order (empty when the store cannot be listed).
pub(crate) async fn fingerprint(spec: &SourceSpec<'_>) -> Vec<FileFingerprint> {
    let Ok(url) = parse_url(spec.uri) else {
        return Vec::new();
    };
    let (Ok(store), Ok(path)) = (store_for(&url), object_path(&url)) else {
        return Vec::new();
    };
    let root = store_root(&url);
    let root = root.as_str().trim_end_matches('/');
    let metas = match store.head(&path).await {
        Ok(meta) => vec![meta],
        Err(_) => {
            // A glob lists its fixed prefix.
            let prefix = if has_glob(spec.uri) {
                let fixed: Vec<&str> = path
                    .as_ref()
                    .split('/')
                    .take_while(|p| !has_glob(p))
                    .collect();
                ObjectPath::from(fixed.join("/"))
            } else {
                path.clone()
            };
            list(store.as_ref(), &prefix).await.unwrap_or_default()
        }
    };
    metas
        .into_iter()
        .filter(|m| !hidden(relative(&m.location, &path)))
        .map(|m| FileFingerprint {
            path: format!("{root}/{}", m.location),
            size: m.size,
            modified: m.last_modified.timestamp(),
            version: m.e_tag.clone().unwrap_or_default(),
        })
        .collect()
}

pub(crate) fn register_store(
    ctx: &datafusion::prelude::SessionContext,
    spec: &SourceSpec<'_>,
) -> Result<(Url, Arc<dyn ObjectStore>)> {
    let url = parse_url(spec.uri).map_err(|m| source_err(spec, m))?;
    let store = store_for(&url).map_err(|m| source_err(spec, m))?;
    ctx.register_object_store(&store_root(&url), store.clone());
    Ok((url, store))
}

/// An object store registry that opens `s3://`, `gs://` and `az://`
/// stores on first use, from the environment (as [`store_for`]). Ballista
/// executors use it: the plan they receive names its files by URL only.
#[derive(Debug, Default)]
pub struct LazyObjectStoreRegistry {
    inner: datafusion::execution::object_store::DefaultObjectStoreRegistry,
}

impl datafusion::execution::object_store::ObjectStoreRegistry for LazyObjectStoreRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.inner.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        self.inner.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> datafusion::common::Result<Arc<dyn ObjectStore>> {
        match self.inner.get_store(url) {
            Ok(store) => Ok(store),
            Err(e) if SCHEMES.contains(&url.scheme()) => {
                let store = store_for(url).map_err(|m| {
                    datafusion::error::DataFusionError::External(format!("{m} (after: {e})").into())
                })?;
                self.inner.register_store(&store_root(url), store.clone());
                Ok(store)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_object_store_urls() {
        assert!(is_object_store_uri("s3://bucket/data/"));
        assert!(is_object_store_uri("GS://bucket/x.parquet"));
        assert!(is_object_store_uri("az://container/x.csv"));
        assert!(!is_object_store_uri("file:///tmp/x.csv"));
        assert!(!is_object_store_uri("data/x.csv"));
        assert!(!is_object_store_uri("postgres://u@h/db?table=t"));
        assert!(parse_url("s3:///x.csv").is_err());
    }

    #[test]
    fn roots_and_paths() {
        let url = Url::parse("s3://bucket/a/b/c.parquet").unwrap();
        assert_eq!(store_root(&url).as_str(), "s3://bucket");
        assert_eq!(object_path(&url).unwrap().as_ref(), "a/b/c.parquet");
        let p = ObjectPath::from("a/b");
        assert_eq!(
            relative(&ObjectPath::from("a/b/month=1/x.parquet"), &p),
            "month=1/x.parquet"
        );
    }
}
