//! Independent numerical machinery for the tests: Gauss–Legendre nodes computed
//! by Newton's method on the Legendre recurrence, and composite quadrature of
//! functions of a standardized normal variable over its effective support.

#![allow(dead_code)]

use std::f64::consts::PI;

/// Nodes and weights of n-point Gauss–Legendre on [-1, 1].
pub fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut x = (PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            // P_n(x) and P_n'(x) by the three-term recurrence.
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
                p0 = p1;
                p1 = p2;
            }
            dp = n as f64 * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / dp;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        out.push((x, 2.0 / ((1.0 - x * x) * dp * dp)));
    }
    out
}

/// Composite Gauss–Legendre of `f` over `[lo, hi]` with `panels` panels.
pub fn integrate(f: impl Fn(f64) -> f64, lo: f64, hi: f64, panels: usize) -> f64 {
    let gl = gauss_legendre(20);
    let h = (hi - lo) / panels as f64;
    let mut s = 0.0;
    for p in 0..panels {
        let a = lo + p as f64 * h;
        for &(x, w) in &gl {
            s += w * f(a + 0.5 * h * (x + 1.0));
        }
    }
    s * 0.5 * h
}

/// The sub-interval of `[l, u]` outside of which `exp(-t²/2)` is below
/// `exp(-60)` times its maximum over `[l, u]`.
pub fn effective_support(l: f64, u: f64) -> (f64, f64) {
    let m = if u <= 0.0 {
        u
    } else if l >= 0.0 {
        l
    } else {
        0.0
    };
    // Solve d·(2|m| + d) = 120 for the distance d from m.
    let d = -m.abs() + (m * m + 120.0).sqrt();
    ((m - d).max(l), (m + d).min(u))
}

/// Reference moments of the SBP posterior by quadrature in the standardized
/// variable t = (log θ - μ)/σ: returns (Z, E[θ], Var[θ], KL).
pub fn sbp_reference(mu: f64, log_sigma: f64) -> (f64, f64, f64, f64) {
    let (a, b) = (-20.0, 0.0);
    let sigma = log_sigma.exp();
    let (alpha, beta) = ((a - mu) / sigma, (b - mu) / sigma);
    let (lo, hi) = effective_support(alpha, beta);
    let m = if beta <= 0.0 {
        beta
    } else if alpha >= 0.0 {
        alpha
    } else {
        0.0
    };
    let panels = 400;
    // Densities relative to φ(m): ψ(t) = exp(-(t² - m²)/2).
    let psi = |t: f64| (-0.5 * (t - m) * (t + m)).exp();
    let zr = integrate(psi, lo, hi, panels);
    let c = mu + sigma * m;
    let e = integrate(|t| psi(t) * (sigma * t + mu - c).exp(), lo, hi, panels) / zr * c.exp();
    let var = integrate(
        |t| psi(t) * ((mu + sigma * t).exp() - e).powi(2),
        lo,
        hi,
        panels,
    ) / zr;
    // KL = ∫ q log q + log(b - a), q(x) = ψ(t)/(σ·Zr) in x = μ + σt (dx = σ dt).
    let neg_entropy = integrate(
        |t| {
            let p = psi(t) / zr;
            if p == 0.0 {
                0.0
            } else {
                p * (p / sigma).ln()
            }
        },
        lo,
        hi,
        panels,
    );
    let z = zr * (-0.5 * m * m).exp() / (2.0 * PI).sqrt();
    (z, e, var, neg_entropy + (b - a).ln())
}
