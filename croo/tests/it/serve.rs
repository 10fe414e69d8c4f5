//! `croo serve --config FILE`: the server's flags from a file, a flag on
//! the command line winning over it, and a file that cannot be read.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use crate::sources::{croo, text};

/// Child processes killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_configuration_file_sets_the_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let o = croo(
        dir,
        &["sample", "--out", "f", "--customers", "20", "--months", "1"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The file names the formulas folder and a port; the command line
    // asks for another port (port 0: any free one), and wins.
    std::fs::write(
        dir.join("serve.toml"),
        "results = \"store\"\nformulas = \"f\"\nbind = \"127.0.0.1:1\"\ninsecure = true\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_croo"))
        .args(["serve", "--config", "serve.toml", "--bind", "127.0.0.1:0"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _guard = Killed(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server said where it listens")
            .unwrap();
        if let Some(a) = line.strip_prefix("croo serve: listening on http://") {
            break a.trim().to_string();
        }
    };
    assert!(
        !addr.ends_with(":1"),
        "the command line's --bind wins: {addr}"
    );
    let answer = get(&addr, "/v1/formulas");
    assert!(answer.contains("retail-croo"), "{answer}");
    // The results folder of the file, relative to the file.
    assert!(dir.join("store").is_dir());

    // A file that cannot be read, or that says something unknown: exit 1,
    // the file named.
    let o = croo(dir, &["serve", "--config", "nope.toml"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nope.toml"), "{}", text(&o));
    std::fs::write(dir.join("bad.toml"), "port = 8080\n").unwrap();
    let o = croo(dir, &["serve", "--config", "bad.toml"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("bad.toml") && text(&o).contains("port"),
        "{}",
        text(&o)
    );
}
