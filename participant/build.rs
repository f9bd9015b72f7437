//! Links `libtorch_cuda` into the participant binary even though no symbol
//! of it is referenced: without `--no-as-needed` the linker drops it, and
//! libtorch then never registers its CUDA backend, so `tch` silently stays
//! on the CPU on GPU machines. Only binaries get the flag (tests and the
//! library need no GPU). A CPU-only libtorch has no `libtorch_cuda`; the
//! binary then runs on the CPU only. `FEDSKY_PARTICIPANT_CUDA=0` leaves it out
//! on purpose: the CPU container image then needs none of the CUDA libraries.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=FEDSKY_TORCH_LIB");
    println!("cargo:rerun-if-env-changed=FEDSKY_PARTICIPANT_CUDA");
    // FEDSKY_TORCH_LIB (set by the Makefile and env.sh) wins over torch-sys's report:
    // torch-sys asks python for the path only when its own inputs change, so a cached
    // build would otherwise keep linking against a venv that has moved or gone.
    if let Ok(lib) = std::env::var("FEDSKY_TORCH_LIB") {
        println!("cargo:rustc-link-search=native={lib}");
    }
    // Set by torch-sys (`links = "tch"`), the directory of the libtorch libraries.
    let Ok(lib) =
        std::env::var("FEDSKY_TORCH_LIB").or_else(|_| std::env::var("DEP_TCH_LIBTORCH_LIB"))
    else {
        println!(
            "cargo:warning=torch-sys did not report its libtorch directory; not linking libtorch_cuda"
        );
        return;
    };
    if std::env::var("FEDSKY_PARTICIPANT_CUDA").as_deref() == Ok("0") {
        return;
    }
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg-bins=-ltorch_cuda");
        println!("cargo:rustc-link-arg-bins=-Wl,--as-needed");
    } else {
        println!(
            "cargo:warning=libtorch in {lib} has no libtorch_cuda: the participant binary will only use the CPU"
        );
    }
}
