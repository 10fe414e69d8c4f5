//! `croo customers` on the case of `tests/it/data/targets` (see
//! `targets.rs`), run with `--detail`. A customer's score is on the
//! published scale: 100 x spend / 100 = its spend. January 100, 50, 10;
//! February 200, 60, 20 (customers 1, 2: smb; 3: ent); changes +100, +10,
//! +10; a customer's contribution to `value` is 100 x 1 x spend / 100.

use std::path::Path;

use crate::sources::{croo, text};

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = croo(dir, args, &[]);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn keys(doc: &serde_json::Value) -> Vec<String> {
    doc["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pages_of_customers_and_one_customer_over_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/data/targets");
    for f in ["customers.csv", "events.csv", "goals.toml"] {
        std::fs::copy(case.join(f), dir.join(f)).unwrap();
    }
    // Without detail there is nothing to read, and it says so.
    json(
        dir,
        &[
            "run",
            "goals.toml",
            "--period",
            "2026-01",
            "--format",
            "json",
        ],
    );
    let o = croo(
        dir,
        &["customers", "goals.toml", "--period", "2026-01"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--detail"), "{}", text(&o));
    json(
        dir,
        &[
            "run",
            "goals.toml",
            "--from",
            "2026-01",
            "--to",
            "2026-02",
            "--detail",
            "--force",
            "--format",
            "json",
        ],
    );
    let page = |extra: &[&str]| {
        let mut args = vec![
            "customers",
            "goals.toml",
            "--period",
            "2026-02",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        json(dir, &args)
    };
    // Lowest score first; highest first with `-`.
    let doc = page(&[]);
    assert_eq!(keys(&doc), ["3", "2", "1"]);
    assert_eq!(doc["customers"][0]["score"], 20.0);
    assert_eq!(doc["total"], 3);
    assert_eq!(keys(&page(&["--sort=-score"])), ["1", "2", "3"]);
    // The movers: change since January; ties by key.
    let doc = page(&["--sort", "change"]);
    assert_eq!(keys(&doc), ["2", "3", "1"]);
    assert_eq!(doc["customers"][2]["change"], 100.0);
    assert_eq!(doc["customers"][2]["previous_score"], 100.0);
    // By contribution, within one group, a page at a time.
    let doc = page(&[
        "--sort=-contribution.value",
        "--group",
        "segment=smb",
        "--limit",
        "1",
    ]);
    assert_eq!(keys(&doc), ["1"]);
    assert_eq!(doc["total"], 2);
    assert_eq!(
        doc["customers"][0]["components"]["value"]["contribution"],
        200.0
    );
    let doc = page(&[
        "--sort=-contribution.value",
        "--group",
        "segment=smb",
        "--limit",
        "1",
        "--offset",
        "1",
    ]);
    assert_eq!(keys(&doc), ["2"]);
    // Mistakes name the value.
    for (flag, value, says) in [
        ("--sort", "colour", "--sort `colour`"),
        ("--group", "region=eu", "`region` is not a dimension"),
        ("--sort", "contribution.nps", "no component `nps`"),
    ] {
        let o = croo(
            dir,
            &[
                "customers",
                "goals.toml",
                "--period",
                "2026-02",
                flag,
                value,
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains(says), "{}", text(&o));
    }
    // One customer over time.
    let doc = json(
        dir,
        &[
            "customers",
            "goals.toml",
            "--period",
            "2026",
            "--key",
            "3",
            "--format",
            "json",
        ],
    );
    let periods = doc["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 2);
    assert_eq!(periods[0]["measures"]["spend"], 10.0);
    assert_eq!(periods[1]["score"], 20.0);
    assert_eq!(periods[1]["dimensions"]["segment"], "ent");
}
