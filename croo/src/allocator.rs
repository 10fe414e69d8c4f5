//! The process's memory allocator: jemalloc, with freed memory returned to
//! the system within a second.
//!
//! - Returned memory: a run goes through phases (the sources' hash tables,
//!   then the per-customer table, then the rollups); glibc's malloc kept
//!   the pages the first phase freed, so the process's peak was the sum of
//!   the phases rather than the largest (1.1-1.2x DuckDB's peak on the
//!   whole-run benchmark). jemalloc gives dirty pages back after
//!   `dirty_decay_ms` (its default, ten seconds, is longer than most
//!   runs), from a background thread.
//! - No transparent huge pages: with `thp:always` the whole-run benchmark
//!   was about 10% faster at 450k customers but its peak 20-30% higher at
//!   28k (a run's memory then comes in 2 MiB pages), above DuckDB's.
//!   `_RJEM_MALLOC_CONF=thp:always` turns them on.
//!
//! Measured in benches/README.md ("Peak memory against DuckDB"). The
//! settings are read by jemalloc when the process starts; the
//! `_RJEM_MALLOC_CONF` environment variable overrides them.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read under this name (the `_rjem_` prefix of the
/// `tikv-jemalloc-sys` build) as a C string.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
