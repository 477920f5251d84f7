//! Every kernel file compiled by NVRTC and assembled by ptxas (from the `nvidia-cuda-nvcc`
//! wheel, see `.ci/ptxas.sh`) for sm_90 and sm_80: a hot kernel that spills registers to
//! local memory fails the test.  Cold kernels (per-channel double-precision math, run once
//! per channel, not per element) are listed in `COLD` and only reported.
//!
//! Reported as ignored (with the reason) when ptxas or libnvrtc is missing, and failed
//! instead when PRUNE_REQUIRE_PTXAS=1.

use std::path::PathBuf;
use std::process::Command;

use prune_kernels::{compile, KernelFile};

/// Kernels whose work is per channel, not per element: a spill there costs nothing
/// measurable, so it is reported but allowed.
const COLD: &[&str] = &[
    "sbp_channel_stats",
    "sbp_kl_grad",
    "sbp_backward_finalize",
    "base_noise_log_theta",
];

fn main() {
    let tools = match (ptxas_path(), prune_kernels::nvrtc_library_present()) {
        (Some(_), true) => Ok(()),
        (None, _) => {
            Err("ptxas not found (set PRUNE_PTXAS or eval \"$(bash .ci/ptxas.sh)\")".to_string())
        }
        (_, false) => Err("libnvrtc is not on the loader path (see .ci/nvrtc.sh)".to_string()),
    };
    let need = prune_testkit::Need::probe("no ptxas/NVRTC", "PRUNE_REQUIRE_PTXAS", tools);
    let mut trials = prune_testkit::tests!(parser_reads_ptxas_lines);
    trials.extend(prune_testkit::tests_needing!(&need; hot_kernels_do_not_spill));
    prune_testkit::run(trials);
}

/// `$PRUNE_PTXAS`, else `ptxas` when it runs from the PATH.
fn ptxas_path() -> Option<PathBuf> {
    std::env::var_os("PRUNE_PTXAS")
        .map(PathBuf::from)
        .or_else(|| {
            Command::new("ptxas")
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| PathBuf::from("ptxas"))
        })
}

/// (function, spill store bytes, spill load bytes) from `ptxas -v` output.
fn parse_spills(log: &str) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in log.lines() {
        if let Some(rest) = line.split("Function properties for ").nth(1) {
            current = Some(rest.trim().to_string());
        } else if line.contains("spill stores") {
            let nums: Vec<u64> = line
                .split(',')
                .filter_map(|part| part.split_whitespace().next()?.parse().ok())
                .collect();
            if let (Some(f), [_, st, ld, ..]) = (current.take(), nums.as_slice()) {
                out.push((f, *st, *ld));
            }
        }
    }
    out
}

fn parser_reads_ptxas_lines() {
    let log = "ptxas info    : Function properties for sbp_forward\n    \
               8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n";
    assert_eq!(parse_spills(log), vec![("sbp_forward".to_string(), 4, 12)]);
}

fn hot_kernels_do_not_spill() {
    let ptxas = ptxas_path().expect("the harness checked for ptxas");
    let dir = std::env::temp_dir().join(format!("prune-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let mut failures = Vec::new();
    for (arch, sm) in [("compute_90", "sm_90"), ("compute_80", "sm_80")] {
        for file in KernelFile::ALL {
            let compiled = compile(file, arch).unwrap_or_else(|e| panic!("NVRTC: {e}"));
            let ptx = dir.join(format!("{}.{arch}.ptx", file.file_name()));
            std::fs::write(&ptx, &compiled.ptx).expect("write PTX");
            let out = Command::new(&ptxas)
                .args(["-v", &format!("-arch={sm}"), "-o", "/dev/null"])
                .arg(&ptx)
                .output()
                .expect("run ptxas");
            let log = String::from_utf8_lossy(&out.stderr).into_owned()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "ptxas failed on {}:\n{log}",
                file.file_name()
            );
            let spills = parse_spills(&log);
            for &k in file.kernels() {
                assert!(
                    spills.iter().any(|(f, _, _)| f == k),
                    "no ptxas report for {k} in {}",
                    file.file_name()
                );
            }
            for (f, st, ld) in spills {
                if st + ld == 0 {
                    continue;
                }
                let line = format!("{sm} {f}: {st} bytes spill stores, {ld} bytes spill loads");
                if COLD.contains(&f.as_str()) || !file.kernels().contains(&f.as_str()) {
                    eprintln!("ptxas_spills: allowed (cold or device function) {line}");
                } else {
                    failures.push(line);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        failures.is_empty(),
        "register spills in hot kernels:\n{}",
        failures.join("\n")
    );
}
