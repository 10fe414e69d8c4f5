//! The process's memory allocator: jemalloc, with freed memory returned to
//! the system within a second, and a computation's threads sharing few
//! arenas.
//!
//! - Returned memory: a run goes through phases (the sources' hash tables,
//!   then the per-customer table, then the rollups); glibc's malloc kept
//!   the pages the first phase freed, so the process's peak was the sum of
//!   the phases rather than the largest (1.1-1.2x DuckDB's peak on the
//!   whole-run benchmark). jemalloc gives dirty pages back after
//!   `dirty_decay_ms` (its default, ten seconds, is longer than most
//!   runs), from a background thread.
//! - Few arenas ([`bind_thread`]): jemalloc gives each thread one of four
//!   arenas per CPU, each with its own partly used pages; a local
//!   computation's threads (the runtime's workers, its blocking threads,
//!   the main thread) share one arena per four worker threads instead.
//!   Measured on the whole-run benchmark's 28k-customer data: a peak 10-15
//!   MiB lower (about 6%) at the same time; at 450k customers the same time
//!   and memory. Small allocations go through each thread's cache, so the
//!   arena's lock is taken for large ones only. Servers (`serve`,
//!   `scheduler`, `executor`) keep jemalloc's arenas.
//! - No transparent huge pages: with `thp:always` the 450k-customer run
//!   was about 10% faster but a small run's peak 20-30% higher (memory then
//!   comes in 2 MiB pages). `_RJEM_MALLOC_CONF=thp:always` turns them on.
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

/// Worker threads per arena for a local computation.
const THREADS_PER_ARENA: usize = 4;

/// Binds the calling thread, the `index`-th of a computation with
/// `workers` worker threads, to arena `index % arenas`, with one arena per
/// [`THREADS_PER_ARENA`] workers (at most jemalloc's count). Best effort:
/// if jemalloc refuses, the thread keeps the arena it was given.
pub fn bind_thread(index: usize, workers: usize) {
    let available = tikv_jemalloc_ctl::arenas::narenas::read().map_or(1, |n| n.max(1) as usize);
    let arenas = workers.div_ceil(THREADS_PER_ARENA).clamp(1, available);
    let arena = (index % arenas) as u32;
    // SAFETY: `thread.arena` takes an `unsigned`, the type written.
    #[allow(unsafe_code)]
    let _ = unsafe { tikv_jemalloc_ctl::raw::write(b"thread.arena\0", arena) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arena() -> u32 {
        // SAFETY: `thread.arena` reads as an `unsigned`.
        #[allow(unsafe_code)]
        unsafe {
            tikv_jemalloc_ctl::raw::read::<u32>(b"thread.arena\0").unwrap()
        }
    }

    #[test]
    fn a_computations_threads_share_one_arena_per_four_workers() {
        std::thread::spawn(|| {
            // Up to four workers: every thread in arena 0.
            for index in [0, 1, 5] {
                bind_thread(index, 4);
                assert_eq!(arena(), 0, "thread {index} of 4");
            }
            // Eight workers: two arenas, taken in turn.
            bind_thread(5, 8);
            assert_eq!(arena(), 1);
            bind_thread(6, 8);
            assert_eq!(arena(), 0);
        })
        .join()
        .unwrap();
    }
}
