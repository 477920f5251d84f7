//! The kernel crate on its own: the SBP noise layer's forward on the CPU
//! reference (everywhere), then the same launch on the GPU when CUDA, NVRTC
//! and a device are present, compared element by element.
//!
//! ```sh
//! cargo run --release -p prune-kernels --example sbp_noise
//! ```

use prune_kernels::cpu_ref;
use prune_kernels::{KernelContext, NoiseMode, SbpNoise, SbpShape};

fn main() -> Result<(), prune_kernels::KernelError> {
    let shape = SbpShape::nchw(8, 16, 4, 4);
    let x: Vec<f32> = (0..shape.numel()?)
        .map(|i| ((i % 13) as f32 - 6.0) / 4.0)
        .collect();
    let mu: Vec<f32> = (0..16).map(|c| -2.0 + c as f32 * 0.2).collect();
    let ls = vec![-1.0f32; 16];
    let (seed, mode) = (7, NoiseMode::PerChannel);

    // CPU reference: y = x · θ with θ from the truncated log-normal.
    let (y_cpu, theta_cpu) = cpu_ref::sbp::forward(&x, &shape, &mu, &ls, seed, mode)?;
    println!(
        "CPU reference: θ of the first four channels {:?}",
        &theta_cpu[..4]
    );
    for (c, (&m, &l)) in mu.iter().zip(&ls).enumerate().step_by(5) {
        let s = cpu_ref::sbp::stats(f64::from(m), f64::from(l));
        println!(
            "  channel {c}: E[θ] = {:.4}, SNR = {:.3}, kept = {}",
            s.mean,
            s.snr,
            s.snr > 1.0
        );
    }

    // The CUDA launch, when a GPU is present.
    let kc = match KernelContext::new(0) {
        Ok(kc) => kc,
        Err(e) => {
            println!("no GPU launch: {e}");
            return Ok(());
        }
    };
    let sbp = SbpNoise::new(&kc)?;
    let (y_gpu, theta_gpu) = sbp.forward_host(kc.stream(), &x, shape, &mu, &ls, seed, mode)?;
    let max_diff =
        |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    println!(
        "GPU ({}): max |θ_gpu − θ_cpu| = {:.2e}, max |y_gpu − y_cpu| = {:.2e}",
        kc.arch(),
        max_diff(&theta_gpu, &theta_cpu),
        max_diff(&y_gpu, &y_cpu)
    );
    Ok(())
}
