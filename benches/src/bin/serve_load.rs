//! Load generator for `croo serve`: N concurrent clients request one URL
//! for a fixed time; prints requests per second and p50/p90/p99 latency.
//! With BAD_CLIENTS, that many more clients request the same URL at the
//! same time with a wrong key (as fast as they are answered), and their
//! answers are counted by status: what anonymous traffic does to the
//! authorised clients' figures.
//!
//! usage: serve_load URL KEY [CONCURRENCY=16] [SECONDS=10] [BAD_CLIENTS=0]

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark driver prints its figures"
)]

use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: serve_load URL KEY [CONCURRENCY] [SECONDS] [BAD_CLIENTS]");
        std::process::exit(1);
    }
    let url = args[1].clone();
    let key = args[2].clone();
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
    let seconds: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let bad_clients: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(0);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency + bad_clients)
        .build()
        .expect("client");
    // Warm up (and check the route answers 200).
    let r = client
        .get(&url)
        .bearer_auth(&key)
        .send()
        .await
        .expect("request");
    assert!(r.status().is_success(), "{url} answered {}", r.status());
    let bytes = r.bytes().await.map(|b| b.len()).unwrap_or(0);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut bad = Vec::new();
    for i in 0..bad_clients {
        let (client, url) = (client.clone(), url.clone());
        bad.push(tokio::spawn(async move {
            let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
            let wrong = format!("croo_{i:032x}");
            while Instant::now() < end {
                match client.get(&url).bearer_auth(&wrong).send().await {
                    Ok(r) => {
                        *by_status.entry(r.status().as_u16()).or_default() += 1;
                        let _ = r.bytes().await;
                    }
                    Err(_) => *by_status.entry(0).or_default() += 1,
                }
            }
            by_status
        }));
    }
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                match client.get(&url).bearer_auth(&key).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("task");
        all.extend(l);
        errors += e;
    }
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1000.0
    };
    println!(
        "{url}\n  {} requests in {seconds} s with {concurrency} clients ({bytes} bytes each): {:.0} req/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, {errors} errors",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.90),
        pct(0.99),
    );
    if bad_clients > 0 {
        let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
        for t in bad {
            for (s, n) in t.await.expect("task") {
                *by_status.entry(s).or_default() += n;
            }
        }
        let answers: Vec<String> = by_status
            .iter()
            .map(|(s, n)| {
                if *s == 0 {
                    format!("{n} failed")
                } else {
                    format!("{n} x {s}")
                }
            })
            .collect();
        println!(
            "  meanwhile {bad_clients} clients with wrong keys: {} ({:.0} req/s)",
            answers.join(", "),
            by_status.values().sum::<u64>() as f64 / seconds as f64
        );
    }
}
