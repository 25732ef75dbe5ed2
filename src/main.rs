//! The `revsync` binary: everything lives in the library, so tests can run it in-process.

fn main() -> std::process::ExitCode {
    // Test builds only (feature `failpoints`): FAILPOINTS names crash points to arm.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    revsync::cli::main()
}
