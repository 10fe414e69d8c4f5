//! The dependency direction of ARCHITECTURE.md, checked rather than trusted.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn deps(krate: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let mut out = Vec::new();
    for section in ["dependencies", "dev-dependencies"] {
        if let Some(t) = doc.get(section).and_then(|v| v.as_table()) {
            out.extend(t.keys().cloned());
        }
    }
    out
}

#[test]
fn dependency_direction() {
    let rules: &[(&str, &[&str])] = &[
        ("formulas", &["connectors", "engine", "api", "croo"]),
        ("connectors", &["formulas", "engine", "api", "croo"]),
        ("engine", &["api", "croo", "clap", "axum", "miette"]),
        ("api", &["croo"]),
        ("benches", &["api", "croo"]),
    ];
    for (krate, forbidden) in rules {
        let d = deps(krate);
        for f in *forbidden {
            assert!(
                !d.iter().any(|x| x == f),
                "`{krate}` must not depend on `{f}`"
            );
        }
    }
}

#[test]
fn evalexpr_stays_on_the_last_mit_release() {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let i = lock
        .find("name = \"evalexpr\"")
        .expect("evalexpr in Cargo.lock");
    assert!(
        lock[i..].lines().nth(1).unwrap().contains("\"11.3.1\""),
        "evalexpr must stay =11.3.1 (12+ is AGPL)"
    );
}

#[test]
fn arrow_comes_only_through_datafusion() {
    for krate in ["formulas", "connectors", "engine", "api", "benches", "croo"] {
        let d = deps(krate);
        assert!(
            !d.iter().any(|x| x == "arrow" || x == "parquet"),
            "`{krate}`: use datafusion::arrow / datafusion::parquet"
        );
    }
}

#[test]
fn every_source_file_opens_with_a_doc_comment() {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for krate in ["formulas", "connectors", "engine", "api", "benches", "croo"] {
        walk(&root().join(krate).join("src"), &mut files);
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must open with a //! comment",
            f.display()
        );
    }
}
