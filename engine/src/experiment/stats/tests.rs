//! The experiment statistics against hand computation, numpy/scipy
//! (`tests/data/experiment/reference.py`), a planted lift and an A/A
//! false-positive rate.

use super::*;

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 * b.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

/// Two customers per arm, weights 1: the ratio mean is the plain mean and
/// its variance s^2 / n. Treatment 4, 6 (mean 5, s^2 2, var 1); control
/// 1, 3 (mean 2, var 1): lift 3, se sqrt(2), df = 4 / (1 + 1) = 2,
/// t(0.975, 2) = 4.302652729911275.
#[test]
fn a_lift_by_hand() {
    let u = |s: f64| Unit { s, w: 1.0, x: None };
    let t = ratio_mean(&[u(4.0), u(6.0)]).unwrap();
    let c = ratio_mean(&[u(1.0), u(3.0)]).unwrap();
    close(t.mean, 5.0, "mean");
    close(t.variance, 1.0, "variance");
    let l = lift(&t, &c);
    close(l.absolute, 3.0, "lift");
    close(l.se, 2f64.sqrt(), "se");
    close(l.df, 2.0, "df");
    close(l.upper, 3.0 + 4.302652729911275 * 2f64.sqrt(), "upper");
    close(l.relative, 1.5, "relative");
    // 5100 vs 4900 against 50/50: (100^2 / 5000) x 2 = 4.
    close(srm(&[5100, 4900], &[1.0, 1.0]).chi2, 4.0, "srm");
    assert_eq!(holm(&[0.01, 0.02]), vec![0.02, 0.02]);
}

#[test]
fn agrees_with_numpy_and_scipy() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/experiment/reference.json"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let units = |a: &serde_json::Value| -> Vec<Unit> {
        let v = |k: &str| -> Vec<f64> {
            a[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (s, w, x) = (v("s"), v("w"), v("x"));
        (0..s.len())
            .map(|i| Unit {
                s: s[i],
                w: w[i],
                x: Some(x[i]),
            })
            .collect()
    };
    let (tu, cu) = (units(&r["treatment"]), units(&r["control"]));
    let (t, c) = (ratio_mean(&tu).unwrap(), ratio_mean(&cu).unwrap());
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    close(t.mean, f(&r["treatment"]["mean"]), "treatment mean");
    close(
        t.variance,
        f(&r["treatment"]["variance"]),
        "treatment variance",
    );
    close(c.variance, f(&r["control"]["variance"]), "control variance");
    let check = |l: &Lift, e: &serde_json::Value, what: &str| {
        for (name, got) in [
            ("absolute", l.absolute),
            ("se", l.se),
            ("df", l.df),
            ("lower", l.lower),
            ("upper", l.upper),
            ("p", l.p),
            ("relative", l.relative),
            ("relative_lower", l.relative_lower),
            ("relative_upper", l.relative_upper),
            ("control", l.control),
            ("treatment", l.treatment),
        ] {
            // scipy's t quantile and ours agree to about 1e-12.
            assert!(
                (got - f(&e[name])).abs() <= 1e-8 * f(&e[name]).abs().max(1.0),
                "{what} {name}: {got} vs {}",
                e[name]
            );
        }
    };
    check(&lift(&t, &c), &r["lift"], "lift");
    let cu_ = cuped(&tu, &t, &cu, &c).unwrap();
    close(cu_.theta, f(&r["cuped"]["theta"]), "theta");
    close(
        cu_.variance_reduction,
        f(&r["cuped"]["variance_reduction"]),
        "reduction",
    );
    check(&cu_.lift, &r["cuped"]["lift"], "cuped");
    let obs: Vec<u64> = r["srm"]["observed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let s = srm(&obs, &[1.0, 1.0]);
    close(s.chi2, f(&r["srm"]["chi2"]), "srm chi2");
    assert!((s.p - f(&r["srm"]["p"])).abs() < 1e-10, "srm p");
    let obs3: Vec<u64> = r["srm3"]["observed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let s3 = srm(&obs3, &[1.0, 1.0, 2.0]);
    close(s3.chi2, f(&r["srm3"]["chi2"]), "srm3 chi2");
    assert_eq!(s3.df, 2);
    assert!((s3.p - f(&r["srm3"]["p"])).abs() < 1e-10, "srm3 p");
    let ps: Vec<f64> = r["holm"]["p"].as_array().unwrap().iter().map(f).collect();
    let adj: Vec<f64> = r["holm"]["adjusted"]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .collect();
    for (a, b) in holm(&ps).iter().zip(&adj) {
        close(*a, *b, "holm");
    }
}

/// Customers with weights 1-3 and a value around 50 (+- uniform noise);
/// the treatment adds `effect`.
fn arm(rng: &mut ChaCha8Rng, n: usize, effect: f64) -> Vec<Unit> {
    (0..n)
        .map(|_| {
            let w = rng.random_range(1.0..3.0);
            let pre: f64 = 50.0 + rng.random_range(-20.0..20.0);
            let y = pre + rng.random_range(-10.0..10.0) + effect;
            Unit {
                s: w * y,
                w,
                x: Some(pre),
            }
        })
        .collect()
}

/// A planted lift of 2 points is inside its interval, CUPED's too, and
/// CUPED removes variance (the pre-period value explains most of it).
#[test]
fn a_planted_lift_is_recovered() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (tu, cu) = (arm(&mut rng, 4000, 2.0), arm(&mut rng, 4000, 0.0));
    let (t, c) = (ratio_mean(&tu).unwrap(), ratio_mean(&cu).unwrap());
    let l = lift(&t, &c);
    assert!(l.lower < 2.0 && 2.0 < l.upper, "{l:?}");
    assert!(l.p < 0.05, "{l:?}");
    let k = cuped(&tu, &t, &cu, &c).unwrap();
    assert!(k.lift.lower < 2.0 && 2.0 < k.lift.upper, "{k:?}");
    assert!(k.variance_reduction > 0.5, "{k:?}");
    let b = bootstrap(&tu, &cu, 400, 1).unwrap();
    assert!(b.lower < 2.0 && 2.0 < b.upper, "{b:?}");
    // The same seed, the same interval.
    assert_eq!(bootstrap(&tu, &cu, 400, 1), Some(b));
    assert_eq!(guard(&l, 0.5), "pass");
}

/// A/A: 1000 seeded repetitions with no effect. The share of p < 0.05 is
/// within 0.05 +- 2 standard errors (sqrt(0.05 x 0.95 / 1000) = 0.0069),
/// and so is the share of intervals missing 0 with CUPED.
#[test]
fn an_aa_test_rejects_at_its_level() {
    let reps = 1000;
    let (mut plain, mut adjusted) = (0, 0);
    for seed in 0..reps {
        let mut rng = ChaCha8Rng::seed_from_u64(1_000 + seed);
        let (tu, cu) = (arm(&mut rng, 300, 0.0), arm(&mut rng, 300, 0.0));
        let (t, c) = (ratio_mean(&tu).unwrap(), ratio_mean(&cu).unwrap());
        if lift(&t, &c).p < 0.05 {
            plain += 1;
        }
        let k = cuped(&tu, &t, &cu, &c).unwrap();
        if k.lift.lower > 0.0 || k.lift.upper < 0.0 {
            adjusted += 1;
        }
    }
    let se = (0.05f64 * 0.95 / reps as f64).sqrt();
    for (name, hits) in [("plain", plain), ("cuped", adjusted)] {
        let rate = hits as f64 / reps as f64;
        assert!((rate - 0.05).abs() <= 2.0 * se, "{name}: {rate}");
    }
}

#[test]
fn guardrails_read_the_interval() {
    let l = |lower: f64, upper: f64| Lift {
        control: 0.0,
        treatment: 0.0,
        absolute: (lower + upper) / 2.0,
        se: 0.0,
        df: 0.0,
        lower,
        upper,
        p: 0.0,
        relative: 0.0,
        relative_lower: 0.0,
        relative_upper: 0.0,
    };
    assert_eq!(guard(&l(-0.4, 1.0), 0.5), "pass");
    assert_eq!(guard(&l(-0.6, 1.0), 0.5), "inconclusive");
    assert_eq!(guard(&l(-2.0, -0.6), 0.5), "fail");
}
