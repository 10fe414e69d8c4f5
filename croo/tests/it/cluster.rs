//! A Ballista cluster on loopback, made of croo's own processes (one
//! `croo scheduler`, two `croo executor`s): `croo run --cluster` gives the
//! same result rows as a local run, bit for bit.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Child processes killed when dropped.
pub struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16, procs: &mut Procs) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        for c in &mut procs.0 {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("a cluster process exited early: {status}");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

use crate::sources::text;

fn croo(dir: &Path, args: &[&str]) -> Output {
    crate::sources::croo(dir, args, &[])
}

fn rows(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.contains("\"run_id\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One `croo scheduler` and two `croo executor`s on loopback, logging into
/// `dir`; returns the processes (killed when dropped), the cluster URL and
/// a function that reads their logs.
pub fn start_cluster(
    dir: &Path,
    env: &[(&str, String)],
) -> (Procs, String, impl Fn() -> String + use<>) {
    let sched = free_port();
    let mut procs = Procs(Vec::new());
    let log =
        |name: &str| Stdio::from(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    procs.0.push(
        Command::new(env!("CARGO_BIN_EXE_croo"))
            .args(["scheduler", "--bind", &format!("127.0.0.1:{sched}")])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(log("scheduler"))
            .spawn()
            .unwrap(),
    );
    wait_for(sched, &mut procs);
    let mut flight_ports = Vec::new();
    for i in 0..2 {
        let (port, grpc) = (free_port(), free_port());
        flight_ports.push(port);
        procs.0.push(
            Command::new(env!("CARGO_BIN_EXE_croo"))
                .args([
                    "executor",
                    "--scheduler",
                    &format!("127.0.0.1:{sched}"),
                    "--bind-host",
                    "127.0.0.1",
                    "--external-host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--grpc-port",
                    &grpc.to_string(),
                    "--concurrent-tasks",
                    "2",
                    "--work-dir",
                    dir.join(format!("work{i}")).to_str().unwrap(),
                ])
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(Stdio::null())
                .stderr(log(&format!("executor{i}")))
                .spawn()
                .unwrap(),
        );
    }
    for p in flight_ports {
        wait_for(p, &mut procs);
    }
    // Executors register with the scheduler right after they listen.
    std::thread::sleep(Duration::from_secs(2));

    let url = format!("df://127.0.0.1:{sched}");
    let dir = dir.to_path_buf();
    let logs = move || {
        ["scheduler", "executor0", "executor1"]
            .iter()
            .map(|n| {
                format!(
                    "--- {n}\n{}",
                    std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default()
                )
            })
            .collect::<String>()
    };
    (procs, url, logs)
}

#[test]
fn a_loopback_cluster_gives_the_same_rows_as_a_local_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = croo(
        dir,
        &[
            "sample",
            "--out",
            "s",
            "--customers",
            "300",
            "--months",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut months: Vec<String> = std::fs::read_dir(dir.join("s/interactions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy()[6..].to_string())
        .collect();
    months.sort();
    let from = format!("{}-01", months[0]);
    let to = format!("{}-01", months[months.len() - 1]);

    let (_procs, cluster_url, logs) = start_cluster(dir, &[]);

    let formula = "s/retail-croo.toml";
    let base = [
        "run", formula, "--from", &from, "--to", &to, "--format", "json",
    ];
    let local = rows(&croo(dir, &[&base[..], &["--out", "local"]].concat()));
    let remote = croo(
        dir,
        &[&base[..], &["--out", "remote", "--cluster", &cluster_url]].concat(),
    );
    assert!(remote.status.success(), "{}\n{}", text(&remote), logs());
    crate::sources::assert_same(
        &local,
        &rows(&remote),
        "cluster rows differ from local rows",
    );
    // The per-customer table goes to the staging folder (written by the
    // executors, read by the rollups on the cluster) and is removed after;
    // with --detail too.
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let detailed = crate::sources::croo(
        dir,
        &[
            &base[..],
            &[
                "--out",
                "remote-detail",
                "--cluster",
                &cluster_url,
                "--cluster-staging",
                staging.to_str().unwrap(),
                "--detail",
                "--threads",
                "3",
            ],
        ]
        .concat(),
        &[("CROO_LOG", "engine::materialise=debug".to_string())],
    );
    assert!(detailed.status.success(), "{}\n{}", text(&detailed), logs());
    // Every staged table was written by the tasks that computed it, one
    // file per partition (`engine::staged_write`), not by one task: the
    // sources' aggregates come out of an exchange into 3 partitions
    // (`--threads 3`); the tables built on this small population (one
    // file, one partition) have one.
    let stderr = String::from_utf8_lossy(&detailed.stderr);
    let staged: Vec<(bool, usize)> = stderr
        .lines()
        .filter(|l| l.contains(": staged"))
        .filter_map(|l| {
            let n = l
                .split("writers=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((l.contains("aggregating source"), n))
        })
        .collect();
    assert_eq!(
        staged
            .iter()
            .filter(|(source, _)| *source)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>(),
        [3, 3, 3],
        "{stderr}"
    );
    assert!(
        staged.len() > 3 && staged.iter().all(|(_, n)| *n >= 1),
        "{stderr}"
    );
    crate::sources::assert_same(
        &local,
        &rows(&detailed),
        "cluster rows with --detail differ from local rows",
    );
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    // The executors wrote the per-customer rows: the same customers, the
    // same numbers, as a local run's.
    let local_detail = croo(
        dir,
        &[&base[..], &["--out", "local-detail", "--detail"]].concat(),
    );
    assert!(local_detail.status.success(), "{}", text(&local_detail));
    let customers = |out: &str| {
        let o = croo(
            dir,
            &[
                "customers",
                formula,
                "--period",
                &to,
                "--limit",
                "1000",
                "--out",
                out,
                "--format",
                "json",
            ],
        );
        rows(&o)
    };
    let (l, r) = (customers("local-detail"), customers("remote-detail"));
    assert!(l.contains("\"score\""), "{l}");
    assert_eq!(l, r, "per-customer rows differ");
    // The work was done by the executors, not in the client.
    let executed = logs();
    assert!(
        executed.contains("task") || executed.contains("Task"),
        "no executor ran a task:\n{executed}"
    );
}

#[test]
fn an_unreachable_cluster_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = croo(
        dir,
        &["sample", "--out", "s", "--customers", "20", "--months", "1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let port = free_port();
    let o = croo(
        dir,
        &[
            "run",
            "s/retail-croo.toml",
            "--last-complete",
            "--cluster",
            &format!("df://127.0.0.1:{port}"),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("Ballista scheduler"), "{}", text(&o));
    let o = croo(
        dir,
        &[
            "run",
            "s/retail-croo.toml",
            "--last-complete",
            "--cluster",
            "http://x:1",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("df://HOST:PORT"), "{}", text(&o));
}
