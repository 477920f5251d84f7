//! Compiles every kernel file with NVRTC for fixed architectures (no GPU needed) and fails
//! on any error or warning.  Reported as ignored (with the reason) when libnvrtc is not on
//! the loader path, and failed instead when PRUNE_REQUIRE_NVRTC=1.  `.ci/nvrtc.sh` installs NVRTC from PyPI and prints the
//! LD_LIBRARY_PATH export.

use prune_kernels::source::{nvrtc_supported_archs, nvrtc_version};
use prune_kernels::{compile, nvrtc_library_present, KernelFile};

fn main() {
    let need = prune_testkit::Need::probe(
        "libnvrtc is not on the loader path (see .ci/nvrtc.sh)",
        "PRUNE_REQUIRE_NVRTC",
        if nvrtc_library_present() {
            Ok(())
        } else {
            Err("not loadable".into())
        },
    );
    prune_testkit::run(prune_testkit::tests_needing!(&need;
        every_kernel_file_compiles_without_warnings,
        device_architecture_choice_uses_supported_archs,
        a_broken_program_reports_the_compiler_log,
        warnings_reach_the_log,
    ));
}

/// True for a test the harness let run (NVRTC present); panics otherwise.
fn nvrtc_or_skip(test: &str) -> bool {
    assert!(
        nvrtc_library_present(),
        "{test}: libnvrtc is not loadable (run `eval \"$(bash .ci/nvrtc.sh)\"` first)"
    );
    true
}

/// compute_90 is the H100's architecture; compute_80 checks nothing relies on sm_90
/// features.
const ARCHS: [&str; 2] = ["compute_90", "compute_80"];

fn every_kernel_file_compiles_without_warnings() {
    if !nvrtc_or_skip("every_kernel_file_compiles_without_warnings") {
        return;
    }
    let (major, minor) = nvrtc_version().expect("nvrtcVersion");
    eprintln!("NVRTC {major}.{minor}");
    let mut failures = Vec::new();
    for arch in ARCHS {
        for file in KernelFile::ALL {
            match compile(file, arch) {
                Ok(k) => {
                    if !k.log.is_empty() {
                        failures.push(format!(
                            "{} ({arch}) warnings:\n{}",
                            file.file_name(),
                            k.log
                        ));
                    }
                    for name in file.kernels() {
                        let entry = format!(".entry {name}(");
                        if !k.ptx.contains(&entry) {
                            failures.push(format!(
                                "{} ({arch}): no entry {name} in the PTX",
                                file.file_name()
                            ));
                        }
                    }
                }
                Err(e) => failures.push(format!("{} ({arch}): {e}", file.file_name())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn device_architecture_choice_uses_supported_archs() {
    if !nvrtc_or_skip("device_architecture_choice_uses_supported_archs") {
        return;
    }
    let archs = nvrtc_supported_archs().expect("nvrtcGetSupportedArchs");
    assert!(archs.contains(&90), "NVRTC without compute_90: {archs:?}");
    assert_eq!(
        prune_kernels::source::arch_for_device((9, 0), &archs).unwrap(),
        "compute_90"
    );
}

fn a_broken_program_reports_the_compiler_log() {
    // The error path must carry NVRTC's message, not panic.
    if !nvrtc_or_skip("a_broken_program_reports_the_compiler_log") {
        return;
    }
    let err = prune_kernels::source::compile_source(
        "broken.cu",
        "extern \"C\" __global__ void k() { int x = ; }",
        "compute_90",
    )
    .expect_err("a syntax error must not compile");
    let msg = err.to_string();
    assert!(msg.contains("broken.cu"), "{msg}");
    assert!(msg.contains("error"), "{msg}");
}

fn warnings_reach_the_log() {
    // The warning check above relies on NVRTC reporting warnings in the log of a
    // successful compilation; make sure it does.
    if !nvrtc_or_skip("warnings_reach_the_log") {
        return;
    }
    let k = prune_kernels::source::compile_source(
        "warn.cu",
        "extern \"C\" __global__ void k(float* p) { int unused = 3; p[0] = 1.0f; }",
        "compute_90",
    )
    .expect("a warning alone must not fail compilation");
    assert!(k.log.contains("warning"), "log: {:?}", k.log);
}
