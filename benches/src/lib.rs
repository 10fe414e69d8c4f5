//! croo's benchmarks (not tests): `src/bin/serve_load.rs` measures the
//! scores route of `croo serve` on loopback (`serve-load.sh` runs it);
//! `README.md` lists every benchmark, its command and the figures measured.
