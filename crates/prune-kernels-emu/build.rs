//! Compiles every `kernels/*.cu` file as C++ against `cpp/pk_emu.h` (one translation unit,
//! `common.cuh` first, then the other headers `*.cuh` the kernel files build on, then the
//! `.cu` files in name order) together with a generated table of their
//! `extern "C" __global__` kernels.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// Removes `//` and `/* */` comments so that words in them are not taken for code.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Names of the kernels a file defines: `__global__ void [__launch_bounds__(..)] name(`.
fn kernel_names(src: &str) -> Vec<String> {
    let code = strip_comments(src);
    let mut names = Vec::new();
    let mut rest = code.as_str();
    while let Some(pos) = rest.find("__global__") {
        rest = &rest[pos + "__global__".len()..];
        let mut t = rest.trim_start();
        t = t.strip_prefix("void").unwrap_or(t).trim_start();
        if let Some(after) = t.strip_prefix("__launch_bounds__") {
            let close = after.find(')').map(|c| c + 1).unwrap_or(0);
            t = after[close..].trim_start();
        }
        let name: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let kernels = manifest.join("../../kernels");
    let kernels = kernels.canonicalize().unwrap_or(kernels);
    let cpp = manifest.join("cpp");
    println!("cargo:rerun-if-changed={}", kernels.display());
    println!("cargo:rerun-if-changed={}", cpp.display());

    let with_ext = |ext: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(&kernels)
            .unwrap_or_else(|e| panic!("reading {}: {e}", kernels.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == ext))
            .collect();
        v.sort();
        v
    };
    let common = kernels.join("common.cuh");
    let headers: Vec<PathBuf> = with_ext("cuh")
        .into_iter()
        .filter(|p| *p != common)
        .collect();
    let files = with_ext("cu");
    for f in headers.iter().chain(&files) {
        println!("cargo:rerun-if-changed={}", f.display());
    }

    let mut tu = String::from("#include \"pk_emu.h\"\n#include \"pk_emu_table.h\"\n");
    let inc = |p: &Path| format!("#include \"{}\"\n", p.display());
    tu.push_str(&inc(&common));
    for h in &headers {
        tu.push_str(&inc(h));
    }
    let mut all = Vec::new();
    for f in &files {
        tu.push_str(&inc(f));
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        all.extend(kernel_names(&text));
    }
    // The emulator's own test kernels.
    let selftest = cpp.join("selftest.cu");
    tu.push_str(&inc(&selftest));
    all.extend(kernel_names(
        &fs::read_to_string(&selftest).unwrap_or_else(|e| panic!("reading selftest.cu: {e}")),
    ));
    tu.push_str("extern \"C\" const pk_emu::KernelInfo pk_emu_kernels[] = {\n");
    for k in &all {
        let _ = writeln!(tu, "    pk_emu::kernel_info(\"{k}\", &{k}),");
    }
    tu.push_str("};\n");
    let _ = writeln!(
        tu,
        "extern \"C\" const int pk_emu_kernel_count = {};",
        all.len()
    );

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let gen = out.join("pk_emu_kernels.cc");
    fs::write(&gen, tu).unwrap_or_else(|e| panic!("writing {}: {e}", gen.display()));

    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .warnings(false)
        .flag_if_supported("-Wno-unknown-pragmas")
        .flag_if_supported("-fno-fast-math")
        .flag_if_supported("-ffp-contract=off")
        .opt_level(2)
        .include(&cpp)
        .file(&gen)
        .file(cpp.join("pk_emu_runtime.cc"))
        .compile("pk_emu");
}
