//! The process's memory allocator: jemalloc, with freed memory returned to
//! the system within a second, transparent huge pages, and one arena per
//! CPU.
//!
//! - Returned memory: a run goes through phases (the sources' hash tables,
//!   then the per-customer table, then the rollups); glibc's malloc kept
//!   the pages the first phase freed, so the process's peak was the sum of
//!   the phases rather than the largest (1.1-1.2x DuckDB's peak on the
//!   whole-run benchmark). jemalloc gives dirty pages back after
//!   `dirty_decay_ms` (its default, ten seconds, is longer than most
//!   runs), from a background thread.
//! - Huge pages (`thp:always`: `madvise(MADV_HUGEPAGE)` on jemalloc's
//!   memory, which on a system whose THP mode is `madvise`, Debian's and
//!   Ubuntu's default, is what turns them on): a run's time goes largely
//!   to hash tables read at random and to fresh memory the kernel clears
//!   page by page; huge pages cut the page faults and TLB misses (about 8%
//!   of the 450k-customer run's wall time on 2 threads, the gain glibc's
//!   `glibc.malloc.hugetlb=1` gave before).
//! - One arena per CPU (`percpu_arena:percpu`) rather than jemalloc's four:
//!   with huge pages each arena holds partly used 2 MiB pages, and with
//!   four per CPU a small run's peak was 20-30% higher.
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
