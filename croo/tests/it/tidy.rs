//! The dependency direction of ARCHITECTURE.md, checked rather than trusted.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Every crate of the workspace.
const CRATES: [&str; 7] = [
    "kernels",
    "formulas",
    "connectors",
    "engine",
    "api",
    "benches",
    "croo",
];

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
        (
            "kernels",
            &["formulas", "connectors", "engine", "api", "croo"],
        ),
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
    for krate in CRATES {
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
    for krate in CRATES {
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

/// `cargo run` from the workspace root (the README's first command) must
/// find exactly one binary among the default members, and it is `croo`.
#[test]
fn cargo_run_resolves_to_croo() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let defaults: Vec<&str> = meta["workspace_default_members"]
        .as_array()
        .expect("cargo reports the default members")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let mut bins = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        if !defaults.contains(&p["id"].as_str().unwrap()) {
            continue;
        }
        for t in p["targets"].as_array().unwrap() {
            if t["kind"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k.as_str() == Some("bin"))
            {
                bins.push(t["name"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(
        bins,
        vec!["croo".to_string()],
        "`cargo run` must have one binary to run among the default members"
    );
}

/// The README opens with the two commands a newcomer runs, verbatim, and
/// both name things that exist: the `quickstart` subcommand of `croo`, and
/// the test command that CI runs.
#[test]
fn readme_opens_with_the_two_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README.md has a ```sh block");
    let lines: Vec<&str> = block.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "cargo run --release -- quickstart",
            "cargo test --workspace"
        ],
        "the README's first block"
    );
    let first_block_at = readme.find("```sh").unwrap();
    assert!(
        readme[..first_block_at]
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
            <= 1,
        "the commands come first, right under the title"
    );
    // `cargo run --release -- quickstart` runs `croo quickstart`.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_croo"))
        .args(["quickstart", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "croo quickstart --help fails");
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.contains("cargo test --workspace") && !l.trim_start().starts_with('#')),
        ".ci/run runs the README's test command"
    );
}

/// The modules of a crate, each with the modules it names (`crate::x`),
/// from its source files (comments left out). The crate root (`lib.rs`)
/// only declares and re-exports, so it is no node of the graph.
fn module_graph(krate: &str) -> Graph {
    let src = root().join(krate).join("src");
    let mut graph = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let p = e.path();
        let module = if p.is_dir() {
            let m = p.join("mod.rs");
            if !m.exists() {
                continue;
            }
            p.file_name().unwrap().to_string_lossy().to_string()
        } else if p.extension().is_some_and(|x| x == "rs") {
            p.file_stem().unwrap().to_string_lossy().to_string()
        } else {
            continue;
        };
        if module == "lib" || module == "main" {
            continue;
        }
        let mut text = String::new();
        let mut files = vec![p.clone()];
        while let Some(f) = files.pop() {
            if f.is_dir() {
                files.extend(std::fs::read_dir(&f).unwrap().flatten().map(|e| e.path()));
            } else if f.extension().is_some_and(|x| x == "rs") {
                text.push_str(&std::fs::read_to_string(&f).unwrap());
                text.push('\n');
            }
        }
        let mut uses = std::collections::BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    uses.insert(name);
                }
            }
        }
        graph.insert(module, uses);
    }
    graph
}

type Graph = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// A circle of modules in `graph` (its modules in order, the first again
/// at the end), if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'a>(
        m: &'a str,
        graph: &'a Graph,
        state: &mut std::collections::BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|x| *x == m).unwrap_or(0);
                let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m, 1);
        path.push(m);
        for next in graph.get(m).into_iter().flatten() {
            if graph.contains_key(next)
                && let Some(c) = visit(next, graph, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state.insert(m, 2);
        None
    }
    let mut state = std::collections::BTreeMap::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut state, &mut Vec::new()))
}

/// Inside each library, every arrow between modules points one way: no
/// module reaches, through others, back to itself (ARCHITECTURE.md lists
/// the layers of `engine`).
#[test]
fn modules_depend_on_each_other_one_way() {
    for krate in ["kernels", "formulas", "connectors", "engine"] {
        let graph = module_graph(krate);
        assert!(graph.len() >= 3, "`{krate}`: modules found: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "`{krate}`: modules import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

/// The search finds a circle through three modules, and none in a graph
/// with a diamond but no circle.
#[test]
fn a_circle_of_modules_is_found() {
    let graph = |edges: &[(&str, &str)]| -> Graph {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    let circle = graph(&[("run", "plan"), ("plan", "cluster"), ("cluster", "run")]);
    assert_eq!(
        find_cycle(&circle).map(|c| c.len()),
        Some(4),
        "{:?}",
        find_cycle(&circle)
    );
    let diamond = graph(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]);
    assert_eq!(find_cycle(&diamond), None);
}

/// The keys of the formula files' JSON Schema (`croo schema`), as
/// `(table, key)`; a table of named entries is `sources.NAME`, a map of
/// names (`[derived]`) or an array of tables (`[[tests]]`) is `(table, *)`.
fn schema_keys() -> std::collections::BTreeSet<(String, String)> {
    let s: serde_json::Value = serde_json::from_str(formulas::schema::JSON).unwrap();
    let mut out = std::collections::BTreeSet::new();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    for (table, v) in s["properties"].as_object().unwrap() {
        let named = &v["additionalProperties"];
        match table.as_str() {
            "formula" | "rollup" | "operations" | "calendar" => {
                for k in keys(v) {
                    out.insert((table.clone(), k));
                }
            }
            "dimensions" => {
                out.insert(("dimensions".into(), "*".into()));
                for k in keys(&named["oneOf"][1]) {
                    out.insert(("dimensions.NAME".into(), k));
                }
            }
            "sources" | "measures" => {
                for k in keys(named) {
                    out.insert((format!("{table}.NAME"), k));
                }
            }
            "score" => {
                for k in keys(v).into_iter().filter(|k| k != "components") {
                    out.insert(("score".into(), k));
                }
                for k in keys(&v["properties"]["components"]["additionalProperties"]) {
                    out.insert(("score.components.NAME".into(), k));
                }
            }
            _ => {
                out.insert((table.clone(), "*".into()));
            }
        }
    }
    out
}

/// The same from the first column of docs/formula-reference.md's key
/// table (`` `[sources.NAME] active_from`, `active_to` ``).
fn documented_keys() -> std::collections::BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(root().join("docs/formula-reference.md")).unwrap();
    let table = text
        .split("\n## Keys\n")
        .nth(1)
        .and_then(|t| t.trim_start().split("\n\n").next())
        .unwrap();
    let mut out = std::collections::BTreeSet::new();
    for line in table.lines().skip(2) {
        let first = line.split('|').nth(1).unwrap_or_default();
        let ticks: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
        let Some(head) = ticks.first() else { continue };
        let head = head.trim_start_matches('[');
        let (table, rest) = head.split_once(']').unwrap();
        let rest = rest.trim_start_matches(']').trim();
        for k in std::iter::once(rest).chain(ticks[1..].iter().copied()) {
            let k = k.trim();
            let k = if k.is_empty() || k.starts_with("NAME") {
                "*"
            } else {
                k
            };
            out.insert((table.to_string(), k.to_string()));
        }
    }
    out
}

/// `croo schema` and the docs' key table list the same keys.
#[test]
fn the_docs_and_the_schema_list_the_same_keys() {
    let (schema, docs) = (schema_keys(), documented_keys());
    assert!(schema.len() > 20, "{schema:?}");
    let only_schema: Vec<_> = schema.difference(&docs).collect();
    let only_docs: Vec<_> = docs.difference(&schema).collect();
    assert!(
        only_schema.is_empty() && only_docs.is_empty(),
        "in the schema only: {only_schema:?}; in docs/formula-reference.md only: {only_docs:?}"
    );
}
