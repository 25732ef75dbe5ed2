//! The `revsync` binary: everything lives in the library, so tests can run it in-process.

// mimalloc: the engine under sled allocates and frees small nodes at a high rate; with
// glibc's malloc a 1M-change backfill took 1.54x as long (docs/BENCHMARKS.md, ADR 0013).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Test builds only (feature `failpoints`): FAILPOINTS names crash points to arm.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    revsync::cli::main()
}
