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
//! - Transparent huge pages for large runs only ([`huge_pages`]): a local
//!   `croo run` whose sources are [`HUGE_PAGE_INPUT_BYTES`] or more asks
//!   for them (`madvise(MADV_HUGEPAGE)`) over every mapping its arenas make
//!   from then on. At 450k customers (1.1 GB of sources) the run takes
//!   about 200 000 page faults instead of 1 000 000 and 2.0 s of kernel
//!   time instead of 3.5 (of 15-18 s), for a peak 3-10% higher; at 28k
//!   customers (70 MB) huge pages made the peak 20% higher (partly used
//!   2 MiB pages) for no measurable gain, and at 112k (280 MB) 10% higher.
//!   jemalloc's own `thp:always` can only be chosen at start-up, before
//!   the input is known, so the arenas get extent hooks instead: jemalloc's
//!   own, with an `alloc` that advises what it maps. `CROO_NO_HUGE_PAGES=1`
//!   turns this off (to compare); `_RJEM_MALLOC_CONF=thp:always` turns huge
//!   pages on for every run.
//!
//! Measured in benches/README.md ("Peak memory against DuckDB"). The
//! settings are read by jemalloc when the process starts; the
//! `_RJEM_MALLOC_CONF` environment variable overrides them.

use std::ffi::c_void;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tikv_jemalloc_sys::extent_hooks_t;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read under this name (the `_rjem_` prefix of the
/// `tikv-jemalloc-sys` build) as a C string.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Worker threads per arena for a local computation.
const THREADS_PER_ARENA: usize = 4;

/// The arenas [`bind_thread`] gave a computation's threads: `0..` this.
static COMPUTATION_ARENAS: AtomicUsize = AtomicUsize::new(0);

/// Local runs whose sources are at least this large (512 MiB) allocate
/// in transparent huge pages ([`huge_pages`]).
pub const HUGE_PAGE_INPUT_BYTES: u64 = 512 << 20;

/// The hooks [`huge_pages`] gives the computation's arenas: jemalloc's own,
/// with an `alloc` that asks for huge pages over what it maps.
static HUGE_HOOKS: OnceLock<Hooks> = OnceLock::new();

/// jemalloc's own `alloc` hook, which [`huge_alloc`] calls.
static DEFAULT_ALLOC: OnceLock<AllocHook> = OnceLock::new();

type AllocHook = unsafe extern "C" fn(
    *mut extent_hooks_t,
    *mut c_void,
    usize,
    usize,
    *mut bool,
    *mut bool,
    u32,
) -> *mut c_void;

/// A table of extent hooks, which jemalloc reads for as long as an arena
/// lives (here: the process's life).
struct Hooks(extent_hooks_t);

// SAFETY: the table holds function pointers only and is never written
// after it is made.
#[allow(unsafe_code)]
unsafe impl Sync for Hooks {}
#[allow(unsafe_code)]
unsafe impl Send for Hooks {}

/// Makes the memory a local computation allocates from now on eligible
/// for transparent huge pages (`madvise(MADV_HUGEPAGE)`, what jemalloc's
/// `thp:always` does, for the arenas of [`bind_thread`] and jemalloc's
/// arena for huge allocations). A large run then takes far fewer page
/// faults (about 950 000 against 220 000 at 450k customers, a fifth of
/// its time in the kernel against an eighth); a small one would hold
/// partly used 2 MiB pages for little gain, which is why this is decided
/// per run from the size of its input rather than at start-up (see the
/// module's documentation). Returns whether every arena took the hooks;
/// best effort, as the memory is the same either way.
pub fn huge_pages() -> bool {
    let arenas = COMPUTATION_ARENAS.load(Ordering::Relaxed).max(1);
    // jemalloc serves allocations above `opt.oversize_threshold` from an
    // arena of their own, created on the first one: make sure it exists.
    let huge_arena = huge_arena();
    let Some(hooks) = hooks() else {
        return false;
    };
    let mut ok = true;
    for i in (0..arenas).chain(huge_arena) {
        let name = format!("arena.{i}.extent_hooks\0");
        // SAFETY: `arena.<i>.extent_hooks` takes an `extent_hooks_t *`;
        // the table is static and its functions are jemalloc's own or
        // forward to them.
        #[allow(unsafe_code)]
        let set = unsafe { tikv_jemalloc_ctl::raw::write(name.as_bytes(), hooks) };
        ok &= set.is_ok();
    }
    ok
}

/// The index of jemalloc's arena for huge allocations, created if it was
/// not yet; `None` when jemalloc has none.
fn huge_arena() -> Option<usize> {
    // SAFETY: `opt.oversize_threshold` reads as a `size_t`.
    #[allow(unsafe_code)]
    let threshold = unsafe { tikv_jemalloc_ctl::raw::read::<usize>(b"opt.oversize_threshold\0") };
    let threshold = threshold.ok().filter(|t| *t > 0)?;
    // An allocation above the threshold, never touched: its pages are
    // never faulted in.
    drop(std::hint::black_box(Vec::<u8>::with_capacity(
        threshold + 1,
    )));
    // The huge arena is the first after the automatic ones.
    // SAFETY: `opt.narenas` reads as an `unsigned`.
    #[allow(unsafe_code)]
    let auto = unsafe { tikv_jemalloc_ctl::raw::read::<u32>(b"opt.narenas\0") };
    auto.ok().map(|n| n as usize)
}

/// The table of [`HUGE_HOOKS`], made from arena 0's hooks on first use.
fn hooks() -> Option<*mut extent_hooks_t> {
    if HUGE_HOOKS.get().is_none() {
        // SAFETY: `arena.0.extent_hooks` reads as an `extent_hooks_t *`,
        // jemalloc's default table, which lives as long as the process.
        #[allow(unsafe_code)]
        let default = unsafe {
            tikv_jemalloc_ctl::raw::read::<*mut extent_hooks_t>(b"arena.0.extent_hooks\0")
        }
        .ok()
        .filter(|p| !p.is_null())?;
        // SAFETY: not null, and jemalloc's table is never freed.
        #[allow(unsafe_code)]
        let mut table = unsafe { std::ptr::read(default) };
        let alloc = table.alloc?;
        let _ = DEFAULT_ALLOC.set(alloc);
        table.alloc = Some(huge_alloc);
        let _ = HUGE_HOOKS.set(Hooks(table));
    }
    HUGE_HOOKS
        .get()
        .map(|h| std::ptr::from_ref(&h.0).cast_mut())
}

/// jemalloc's `alloc` hook, then `madvise(MADV_HUGEPAGE)` over what it
/// returned.
#[allow(unsafe_code)]
unsafe extern "C" fn huge_alloc(
    hooks: *mut extent_hooks_t,
    new_addr: *mut c_void,
    size: usize,
    alignment: usize,
    zero: *mut bool,
    commit: *mut bool,
    arena: u32,
) -> *mut c_void {
    let Some(alloc) = DEFAULT_ALLOC.get() else {
        return std::ptr::null_mut();
    };
    // SAFETY: jemalloc's own hook, with the arguments jemalloc gave.
    let p = unsafe { alloc(hooks, new_addr, size, alignment, zero, commit, arena) };
    if !p.is_null() {
        // SAFETY: `p..p + size` is the mapping jemalloc just made; the
        // advice changes how the kernel backs it, not its contents.
        unsafe { libc::madvise(p, size, libc::MADV_HUGEPAGE) };
    }
    p
}

/// Binds the calling thread, the `index`-th of a computation with
/// `workers` worker threads, to arena `index % arenas`, with one arena per
/// [`THREADS_PER_ARENA`] workers (at most jemalloc's count). Best effort:
/// if jemalloc refuses, the thread keeps the arena it was given.
pub fn bind_thread(index: usize, workers: usize) {
    let available = tikv_jemalloc_ctl::arenas::narenas::read().map_or(1, |n| n.max(1) as usize);
    let arenas = workers.div_ceil(THREADS_PER_ARENA).clamp(1, available);
    COMPUTATION_ARENAS.fetch_max(arenas, Ordering::Relaxed);
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

    /// The `VmFlags` of the mapping that holds `addr` (`/proc/self/smaps`).
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = range.split_once('-')
                && let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                inside = (a..b).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return flags.to_string();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn huge_pages_advise_the_mappings_made_from_then_on() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            eprintln!("skipped: this kernel has no transparent huge pages");
            return;
        }
        std::thread::spawn(|| {
            bind_thread(0, 1);
            let advised = |v: &Vec<u8>| vm_flags(v.as_ptr() as usize).contains(" hg");
            // Large allocations, each from a mapping of its own (they
            // are held, so none is reused).
            let before: Vec<u8> = Vec::with_capacity(96 << 20);
            assert!(!advised(&before), "{}", vm_flags(before.as_ptr() as usize));
            assert!(huge_pages());
            let after: Vec<u8> = Vec::with_capacity(128 << 20);
            assert!(advised(&after), "{}", vm_flags(after.as_ptr() as usize));
            // Small allocations come from the thread's arena's slabs.
            let small: Vec<Box<[u8; 256]>> = (0..100_000).map(|_| Box::new([1u8; 256])).collect();
            assert!(
                small
                    .iter()
                    .any(|b| vm_flags(b.as_ptr() as usize).contains(" hg"))
            );
            drop((before, after, small));
        })
        .join()
        .unwrap();
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
