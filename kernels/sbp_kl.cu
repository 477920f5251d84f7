// sbp_kl.cu: the KL term of Structured Bayesian Pruning and its gradient, per channel.
// Compiled with common.cuh and sbp_math.cuh prepended (it uses sbp_stats, the bounds and
// the log_sigma clamp defined there, so both files always agree).
//
// KL(mu, ls) = log(B - A) - ls - H(alpha, beta),  sigma = exp(ls),
// alpha = (A - mu)/sigma, beta = (B - mu)/sigma, and H the entropy of the standard normal
// truncated to [alpha, beta]:
//   H = log(sqrt(2 pi e) Z) + N / (2Z),   Z = Phi(beta) - Phi(alpha),
//   N = alpha phi(alpha) - beta phi(beta).
// With pa = phi(alpha)/Z, pb = phi(beta)/Z (so N/Z = alpha pa - beta pb), using
// dZ/dalpha = -phi(alpha), dZ/dbeta = phi(beta), d(x phi(x))/dx = (1 - x^2) phi(x):
//   H_alpha = pa [ -1 + (1 - alpha^2)/2 + (N/Z)/2 ]
//   H_beta  = pb [  1 - (1 - beta^2)/2  - (N/Z)/2 ]
// and d alpha/d mu = d beta/d mu = -1/sigma, d alpha/d ls = -alpha, d beta/d ls = -beta:
//   dKL/dmu = (H_alpha + H_beta) / sigma
//   dKL/dls = -1 + alpha H_alpha + beta H_beta
// Both are zero where sbp_stats clamps KL at 0; each is zero where its parameter is clamped.
// Evaluation without cancellation.  alpha >= 0 is mapped to the lower tail by the mirror
// (alpha', beta') = (-beta, -alpha), under which H_alpha = -H'_beta', H_beta = -H'_alpha'.
// There, with E_a = 1 + alpha^2 - N/Z and E_b = 1 + beta^2 - N/Z,
//   H_alpha = -pa E_a / 2,   H_beta = pb E_b / 2.
// For beta <= 0, with t = -beta, the Mills ratio r = Phi(beta)/phi(beta),
// rho = Phi(alpha)/Phi(beta), M = 1 - rho (as in sbp_trunc_entropy), G = 1 - t r >= 0
// (pk_mills_gap) and q = (alpha - beta)(alpha + beta)/2:
//   pb = 1/(r M),   pa = exp(-q)/(r M)
//   E_b = (Q - rho (1 + t^2))/M - alpha pa,   Q = 1 + t^2 - t/r = (r - t G)/r
// Q = E[(beta - X)^2 | X < beta] is ~2/t^2 for large t; the direct 1 + beta^2 - N/Z would
// lose it to cancellation between terms of size t^2, while (r - t G) only loses a factor t^2.
// (see sbp_tail_q).  Elsewhere (beta > 0 > alpha) Z comes from erf directly and nothing cancels.
// Q(t) = E[(beta - X)^2 | X < beta] at t = -beta: (r - t G)/r up to t = 1000 (relative
// rounding ~1e-16 t^2), beyond it the asymptotic series I2/I0 with
//   I_k = int_0^inf d^k exp(-t d - d^2/2) dd = sum_j (-1)^j (k + 2j)! / (2^j j! t^(k+2j+1)),
//   Q = (2/t^2)(1 - 6/t^2 + 45/t^4 - 420/t^6) / (1 - 1/t^2 + 3/t^4 - 15/t^6)
// whose next terms are below 1e-17 relative there.
__device__ __forceinline__ double sbp_tail_q(double t, double r, double g) {
    if (t <= 1000.0) return (r - t * g) / r;
    const double u = 1.0 / (t * t);
    return 2.0 * u * (1.0 - u * (6.0 - u * (45.0 - 420.0 * u))) /
           (1.0 - u * (1.0 - u * (3.0 - 15.0 * u)));
}

__device__ void sbp_kl_hgrad(double alpha, double beta, double* h_alpha, double* h_beta) {
    const bool mirror = alpha >= 0.0;
    if (mirror) {
        const double t = alpha;
        alpha = -beta;
        beta = -t;
    }
    double pa, pb, ea, eb;
    if (beta <= 0.0) {
        const double t = -beta;
        const double lb = pk_log_cdf_scaled(beta);
        const double q = 0.5 * (alpha - beta) * (alpha + beta);
        const double e = pk_log_cdf_scaled(alpha) - lb - q;  // log rho
        const double m = -expm1(e);
        const double rho = exp(e);
        const double r = PK_SQRT_PI_OVER_2 * erfcx(t * PK_SQRT1_2);
        const double g = pk_mills_gap(t * PK_SQRT1_2);
        pb = 1.0 / (r * m);
        pa = exp(-q) / (r * m);
        const double apa = pa == 0.0 ? 0.0 : alpha * pa;
        const double nz = apa + t * pb;
        const double qq = sbp_tail_q(t, r, g);
        eb = (qq - rho * (1.0 + t * t)) / m - apa;
        ea = pa == 0.0 ? 0.0 : 1.0 + alpha * alpha - nz;
    } else {
        const double z = 0.5 * (erf(beta * PK_SQRT1_2) + erf(-alpha * PK_SQRT1_2));
        pa = pk_pdf(alpha) / z;
        pb = pk_pdf(beta) / z;
        const double apa = pa == 0.0 ? 0.0 : alpha * pa;
        const double bpb = pb == 0.0 ? 0.0 : beta * pb;
        const double nz = apa - bpb;
        ea = pa == 0.0 ? 0.0 : 1.0 + alpha * alpha - nz;
        eb = pb == 0.0 ? 0.0 : 1.0 + beta * beta - nz;
    }
    const double ha = -0.5 * pa * ea, hb = 0.5 * pb * eb;
    *h_alpha = mirror ? -hb : ha;
    *h_beta = mirror ? -ha : hb;
}

// The parameter clamp of sbp_noise.cu: log_sigma in [SBP_LOG_SIGMA_MIN, SBP_LOG_SIGMA_MAX],
// or, where sbp_noise.cu clamps both parameters, mu and log_sigma in
// [SBP_PARAM_MIN, SBP_PARAM_MAX].  Outside the clamp the gradient is zero.
#ifdef SBP_PARAM_MIN
#define SBP_KL_MU_LO SBP_PARAM_MIN
#define SBP_KL_MU_HI SBP_PARAM_MAX
#define SBP_KL_LS_LO SBP_PARAM_MIN
#define SBP_KL_LS_HI SBP_PARAM_MAX
#else
#define SBP_KL_MU_LO (-1e300)
#define SBP_KL_MU_HI 1e300
#define SBP_KL_LS_LO SBP_LOG_SIGMA_MIN
#define SBP_KL_LS_HI SBP_LOG_SIGMA_MAX
#endif

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
sbp_kl_grad(const float* __restrict__ mu, const float* __restrict__ log_sigma,
            float* __restrict__ kl, float* __restrict__ dmu, float* __restrict__ dlog_sigma,
            int channels) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    const double m_raw = (double)mu[c], ls_raw = (double)log_sigma[c];
    const SbpStats st = sbp_stats(m_raw, ls_raw);
    kl[c] = (float)st.kl;
    const bool mu_clamped = !(m_raw >= SBP_KL_MU_LO && m_raw <= SBP_KL_MU_HI);
    const bool ls_clamped = !(ls_raw >= SBP_KL_LS_LO && ls_raw <= SBP_KL_LS_HI);
    if (st.kl <= 0.0) {
        dmu[c] = 0.0f;
        dlog_sigma[c] = 0.0f;
        return;
    }
    const double m = fmin(fmax(m_raw, SBP_KL_MU_LO), SBP_KL_MU_HI);
    const double sigma = exp(fmin(fmax(ls_raw, SBP_KL_LS_LO), SBP_KL_LS_HI));
    const double alpha = (SBP_A - m) / sigma, beta = (SBP_B - m) / sigma;
    double h_a, h_b;
    sbp_kl_hgrad(alpha, beta, &h_a, &h_b);
    dmu[c] = mu_clamped ? 0.0f : (float)((h_a + h_b) / sigma);
    const double ah = h_a == 0.0 ? 0.0 : alpha * h_a;
    const double bh = h_b == 0.0 ? 0.0 : beta * h_b;
    dlog_sigma[c] = ls_clamped ? 0.0f : (float)(-1.0 + ah + bh);
}
