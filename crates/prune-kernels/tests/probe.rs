//! The probe reports a missing driver, NVRTC or device as an error, never a panic.

use prune_kernels::{
    driver_library_present, nvrtc_library_present, probe, KernelContext, KernelError,
};

#[test]
fn probe_reports_cleanly() {
    let required = std::env::var("PRUNE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    match probe() {
        Ok(info) => {
            eprintln!("probe: {info:?}");
            assert!(info.multiprocessors > 0);
            assert!(info.compute_capability.0 >= 5);
            let kc = KernelContext::new(0).expect("context on a probed device");
            assert!(kc.arch().starts_with("compute_"), "{}", kc.arch());
            kc.compile_all()
                .expect("every kernel file compiles and loads");
        }
        Err(e) => {
            assert!(!required, "PRUNE_REQUIRE_GPU=1 but probe failed: {e}");
            eprintln!("probe: no GPU ({e})");
            match e {
                KernelError::NoCuda(_) => {
                    assert!(!driver_library_present() || !nvrtc_library_present())
                }
                KernelError::NoDevice(_) => assert!(driver_library_present()),
                other => panic!("unexpected probe error kind: {other}"),
            }
            // Creating a context fails the same way, without panicking.
            assert!(KernelContext::new(0).is_err());
        }
    }
}
