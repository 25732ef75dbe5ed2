//! The `revsync` binary: everything lives in the library, so tests can run it in-process.

// mimalloc: the engine under sled allocates and frees small nodes at a high rate; with
// glibc's malloc a 1M-change backfill took 1.54x as long (docs/BENCHMARKS.md, ADR 0013).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3 option ids (`mi_option_e` in its mimalloc.h); the -sys crate leaves them
/// unnamed. `purge_delay` defaults to 1000 ms, `arena_purge_mult` to 1.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ARENA_PURGE_MULT: libmimalloc_sys::mi_option_t = 24;

/// Memory freed back to mimalloc's arenas goes back to the OS at once instead of after a
/// delay. A delayed purge only runs when a later free on the same arena comes due, so
/// a burst of large API answers (a 17 MiB page) left its memory resident for good: the
/// 1-hour soak's RSS rose 24% in steps. ADR 0034 has the measurements.
#[allow(
    unsafe_code,
    reason = "mimalloc's option API is C; set once before any thread starts"
)]
fn return_freed_memory_promptly() {
    // SAFETY: plain integer setters; mi_option_set is not thread-safe, and this runs
    // first in `main`, before the runtime or any other thread exists.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_PURGE_MULT, 0);
        }
    }
}

fn main() -> std::process::ExitCode {
    return_freed_memory_promptly();
    // Test builds only (feature `failpoints`): FAILPOINTS names crash points to arm.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    revsync::cli::main()
}
