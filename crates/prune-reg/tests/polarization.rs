//! The polarization regularizer: subgradient, clamping, and the polarized split
//! ρ = ½ - t/4 of Zhuang et al. (2020) on a toy problem.

use prune_reg::polarization::{clamp_gammas, init_gammas, Polarization, GAMMA_INIT, GAMMA_UPPER};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn r_value(gammas: &[f64], t: f64) -> f64 {
    let mean = gammas.iter().sum::<f64>() / gammas.len() as f64;
    gammas.iter().map(|&g| t * g.abs() - (g - mean).abs()).sum()
}

#[test]
fn subgradient_matches_finite_differences_off_the_kinks() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let reg = Polarization::new(0.7, 1.2).unwrap();
    for _ in 0..20 {
        let l1: Vec<f32> = (0..7).map(|_| rng.random_range(0.01f32..1.0)).collect();
        let l2: Vec<f32> = (0..5).map(|_| rng.random_range(-0.5f32..1.0)).collect();
        let groups: [&[f32]; 2] = [&l1, &l2];
        let eval = reg.value_and_grad(&groups).unwrap();
        assert!((eval.value - reg.value(&groups).unwrap()).abs() < 1e-12);
        let flat: Vec<f64> = l1.iter().chain(&l2).map(|&g| f64::from(g)).collect();
        let mean = flat.iter().sum::<f64>() / flat.len() as f64;
        assert!((eval.mean - mean).abs() < 1e-12);
        let grad: Vec<f32> = eval.grad.concat();
        let h = 1e-7;
        for j in 0..flat.len() {
            // Skip coordinates within 10h of a kink (γ = 0 or γ = γ̄ or any γᵢ = γ̄ moving).
            let near = flat[j].abs() < 1e-5 || flat.iter().any(|&g| (g - mean).abs() < 1e-5);
            if near {
                continue;
            }
            let mut p = flat.clone();
            p[j] += h;
            let mut m = flat.clone();
            m[j] -= h;
            let fd = 0.7 * (r_value(&p, 1.2) - r_value(&m, 1.2)) / (2.0 * h);
            assert!(
                (f64::from(grad[j]) - fd).abs() < 1e-5,
                "coordinate {j}: {} vs {fd}",
                grad[j]
            );
        }
    }
}

#[test]
fn subgradient_uses_sign_zero_and_the_mean_term() {
    // γ = (0, 0.5, 1): mean 0.5. ∂R/∂γ = t·sign(γ) - sign(γ - γ̄) + (1/n)Σ sign(γᵢ - γ̄).
    let reg = Polarization::new(1.0, 1.0).unwrap();
    let g = [0.0f32, 0.5, 1.0];
    let e = reg.value_and_grad(&[&g]).unwrap();
    assert_eq!(e.grad[0], vec![1.0, 1.0, 0.0]);
    // R = Σ t|γ| - Σ|γ - γ̄| = 1.5 - 1.0.
    assert!((e.value - 0.5).abs() < 1e-12);
}

#[test]
fn clamp_and_init() {
    let mut g = vec![-0.3f32, 0.2, 1.7, 1.0, 0.0];
    clamp_gammas(&mut g, GAMMA_UPPER).unwrap();
    assert_eq!(g, vec![0.0, 0.2, 1.0, 1.0, 0.0]);
    assert!(clamp_gammas(&mut g, 0.0).is_err());
    assert_eq!(init_gammas(3), vec![GAMMA_INIT; 3]);
    assert!(Polarization::new(-1.0, 1.0).is_err());
    assert!(Polarization::new(1.0, 0.0).is_err());
    assert!(Polarization::new(1.0, 1.0).unwrap().value(&[&[]]).is_err());
    assert!(Polarization::new(1.0, 1.0)
        .unwrap()
        .value(&[&[f32::NAN]])
        .is_err());
}

/// Toy loss: c·Σ(γᵢ - 1)² + λ·R(γ), with R dominating (c ≪ λ/n).
struct Toy {
    c: f64,
    lambda: f64,
    t: f64,
    a: f64,
}

impl Toy {
    fn loss(&self, g: &[f64]) -> f64 {
        self.c * g.iter().map(|x| (x - 1.0).powi(2)).sum::<f64>() + self.lambda * r_value(g, self.t)
    }

    /// Exact minimization of the loss over coordinate j in [0, a]: R is piecewise
    /// linear in γⱼ with breakpoints where γⱼ or another γᵢ meets the mean, so the
    /// minimum lies at a breakpoint, an end, or a stationary point of a piece.
    fn minimize_coordinate(&self, g: &mut [f64], j: usize) {
        let n = g.len() as f64;
        let rest: f64 = g.iter().sum::<f64>() - g[j];
        let mut cands = vec![0.0, self.a, rest / (n - 1.0)];
        for (i, &gi) in g.iter().enumerate() {
            if i != j {
                cands.push(n * gi - rest);
            }
        }
        cands.retain(|&x| (0.0..=self.a).contains(&x));
        cands.sort_by(f64::total_cmp);
        let eval = |g: &mut [f64], x: f64| {
            g[j] = x;
            (self.loss(g), self.lambda * r_value(g, self.t))
        };
        let mut extra = Vec::new();
        for w in cands.windows(2) {
            let (p, q) = (w[0], w[1]);
            if q - p < 1e-15 {
                continue;
            }
            let slope = (eval(g, q).1 - eval(g, p).1) / (q - p);
            extra.push((1.0 - slope / (2.0 * self.c)).clamp(p, q));
        }
        cands.extend(extra);
        let mut best = (f64::INFINITY, g[j]);
        for &x in &cands {
            let l = eval(g, x).0;
            if l < best.0 {
                best = (l, x);
            }
        }
        g[j] = best.1;
    }
}

#[test]
fn coordinate_minimization_reaches_the_polarized_split() {
    // With k of n scales at a and the rest at 0, R = a·k·(t - 2 + 2k/n) is
    // minimal at k/n = ½ - t/4 (the paper's theorem); every split with
    // k/n < 1 - t/2 is stationary for projected descent, so the toy uses exact
    // coordinate minimization, which can move a unit across the mean.
    let n = 100;
    for (t, seed) in [(0.4, 11u64), (1.0, 12), (1.2, 13)] {
        let toy = Toy {
            c: 1e-4,
            lambda: 1.0,
            t,
            a: 1.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut g: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let start = toy.loss(&g);
        for _sweep in 0..200 {
            let before = g.clone();
            for j in 0..n {
                toy.minimize_coordinate(&mut g, j);
            }
            let moved = before.iter().zip(&g).any(|(x, y)| (x - y).abs() > 1e-12);
            if !moved {
                break;
            }
        }
        assert!(toy.loss(&g) < start);
        let at_a = g.iter().filter(|&&x| (x - 1.0).abs() < 1e-9).count();
        let at_0 = g.iter().filter(|&&x| x.abs() < 1e-9).count();
        assert_eq!(at_a + at_0, n, "t = {t}: not polarized: {g:?}");
        let expected = n as f64 * (0.5 - t / 4.0);
        println!("t = {t}: {at_a} of {n} at a (theory {expected})");
        assert!(
            (at_a as f64 - expected).abs() <= 1.0,
            "t = {t}: {at_a} at a, expected {expected}"
        );
    }
}

#[test]
fn projected_subgradient_descent_polarizes_into_a_stationary_split() {
    // The training dynamics (subgradient step, then clamp to [0, a]) drive the
    // scales to the two ends; the split reached lies in the stationary range
    // 0 < k/n ≤ 1 - t/2 (+1/n for the discrete crossing): the scales above the
    // mean sink while t - 2 + 2k/n > 0 and rise once it is negative. When
    // n·(1 - t/2) is an integer that subgradient can be exactly 0 (a flat
    // direction only the small data term moves along), so n = 101 here.
    let n = 101;
    for (t, seed) in [(0.4, 21u64), (0.8, 22), (1.2, 23), (1.6, 24)] {
        let reg = Polarization::new(1.0, t).unwrap();
        let c = 1e-4f32;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut g: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
        let start = r_value(&g.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), t);
        let lr = 1e-2f32;
        for _ in 0..40000 {
            let e = reg.value_and_grad(&[&g]).unwrap();
            for (x, d) in g.iter_mut().zip(&e.grad[0]) {
                *x -= lr * (d + 2.0 * c * (*x - 1.0));
            }
            clamp_gammas(&mut g, 1.0).unwrap();
        }
        let at_a = g.iter().filter(|&&x| x == 1.0).count();
        let at_0 = g.iter().filter(|&&x| x == 0.0).count();
        let mut rest: Vec<f32> = g
            .iter()
            .copied()
            .filter(|&x| x != 0.0 && x != 1.0)
            .collect();
        rest.sort_by(f32::total_cmp);
        assert_eq!(
            at_a + at_0,
            n,
            "t = {t}: not polarized: {at_a} at a, {at_0} at 0, others {rest:?}"
        );
        let rho = at_a as f64 / n as f64;
        let end = r_value(&g.iter().map(|&x| f64::from(x)).collect::<Vec<_>>(), t);
        println!(
            "t = {t}: descent split {rho} (stationary range (0, {}])",
            1.0 - t / 2.0
        );
        assert!(end < start);
        assert!(
            rho > 0.0 && rho <= 1.0 - t / 2.0 + 1.0 / n as f64,
            "t = {t}: ρ = {rho}"
        );
    }
}
