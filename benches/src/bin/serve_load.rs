//! Load generator for `croo serve`: N concurrent clients request one URL
//! for a fixed time; prints requests per second and p50/p90/p99 latency.
//!
//! usage: serve_load URL KEY [CONCURRENCY=16] [SECONDS=10]

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
        eprintln!("usage: serve_load URL KEY [CONCURRENCY] [SECONDS]");
        std::process::exit(1);
    }
    let url = args[1].clone();
    let key = args[2].clone();
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);
    let seconds: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
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
}
