// sbp_math.cuh: the per-channel math of the SBP noise (Neklyudov et al., 2017), device
// functions only: the pathwise sample and its derivatives (sbp_sample) and the channel
// statistics E[theta], SNR and KL (sbp_stats).  Compiled after common.cuh, before the
// kernel files that use it (sbp_noise.cu, sbp_kl.cu, baseline.cu).
//
// Each channel c carries a truncated log-normal noise theta_c:
//   log theta ~ N(mu, sigma^2) truncated to [A, B] = [-20, 0],  sigma = exp(log_sigma)
//   alpha = (A - mu)/sigma, beta = (B - mu)/sigma, Z = Phi(beta) - Phi(alpha)
//   mu, log_sigma clamped to [-20, 5] first
//   u = clip((1 - eps) Phi(alpha) + eps Phi(beta), 1e-5, 1 - 1e-5),  z = Phi^-1(u)
//   (mirrored through Phi(-.) when alpha + beta > 0, see sbp_sample)
//   theta = exp(clip(mu + sigma z, A, B)),
// The math is that of the CPU reference, prune-kernels src/cpu_ref/{sbp,sbp_closed}.rs.
// It runs in double precision, once per channel (or per example and channel).

#define SBP_A (-20.0)
#define SBP_B (0.0)
#define SBP_UCLIP 1e-5
#define SBP_PARAM_MIN (-20.0)
#define SBP_PARAM_MAX (5.0)
#define SBP_SNR_MAX 1e30

struct SbpSample {
    double theta;     // the sample
    double dth_dmu;   // d theta / d mu at fixed eps
    double dth_dls;   // d theta / d log_sigma at fixed eps
};

// Pathwise sample and its derivatives.  With
//   u_raw = (1 - eps) Phi(alpha) + eps Phi(beta),  d alpha/d mu = d beta/d mu = -1/sigma,
//   d alpha/d log_sigma = -alpha,  d beta/d log_sigma = -beta:
//   du/dmu  = -[(1 - eps) phi(alpha) + eps phi(beta)] / sigma
//   du/dls  = -[(1 - eps) alpha phi(alpha) + eps beta phi(beta)]
//   dz/du   = 1 / phi(z)                      (0 when the u-clip is active)
//   L = mu + sigma z:  dL/dmu = 1 + sigma dz/dmu,  dL/dls = sigma z + sigma dz/dls
//   theta = exp(clip(L, A, B)):  dtheta = theta dL  (0 when the L-clip is active)
// mu and log_sigma are clamped to [SBP_PARAM_MIN, SBP_PARAM_MAX] (zero derivative for a
// clamped parameter).  When alpha + beta > 0 the interval lies mostly above the mode and
// Phi(.) ~ 1 would cancel, so the mirrored quantity
// v = 1 - u = (1 - eps) Phi(-alpha) + eps Phi(-beta) is used instead; z = -Phi^-1(v) and
// the clip is symmetric, so the value and the derivatives agree.
__device__ SbpSample sbp_sample(double mu_in, double log_sigma, double eps) {
    const bool mu_clamped = !(mu_in >= SBP_PARAM_MIN && mu_in <= SBP_PARAM_MAX);
    const bool ls_clamped = !(log_sigma >= SBP_PARAM_MIN && log_sigma <= SBP_PARAM_MAX);
    const double mu = fmin(fmax(mu_in, SBP_PARAM_MIN), SBP_PARAM_MAX);
    const double ls = fmin(fmax(log_sigma, SBP_PARAM_MIN), SBP_PARAM_MAX);
    const double sigma = exp(ls);
    const double alpha = (SBP_A - mu) / sigma;
    const double beta = (SBP_B - mu) / sigma;
    const bool mirror = alpha + beta > 0.0;
    double w, z;
    if (!mirror) {
        w = (1.0 - eps) * pk_cdf(alpha) + eps * pk_cdf(beta);
    } else {
        w = (1.0 - eps) * pk_cdf(-alpha) + eps * pk_cdf(-beta);
    }
    const bool u_clipped = !(w >= SBP_UCLIP && w <= 1.0 - SBP_UCLIP);
    w = fmin(fmax(w, SBP_UCLIP), 1.0 - SBP_UCLIP);
    z = mirror ? -normcdfinv(w) : normcdfinv(w);

    const double pdf_a = pk_pdf(alpha), pdf_b = pk_pdf(beta);
    double dz_dmu = 0.0, dz_dls = 0.0;
    if (!u_clipped) {
        const double inv_pdf_z = 1.0 / pk_pdf(z);
        const double du_dmu = -((1.0 - eps) * pdf_a + eps * pdf_b) / sigma;
        const double ta = pdf_a == 0.0 ? 0.0 : alpha * pdf_a;
        const double tb = pdf_b == 0.0 ? 0.0 : beta * pdf_b;
        const double du_dls = -((1.0 - eps) * ta + eps * tb);
        dz_dmu = du_dmu * inv_pdf_z;
        dz_dls = du_dls * inv_pdf_z;
    }
    const double l = mu + sigma * z;
    SbpSample s;
    if (l < SBP_A || l > SBP_B) {
        s.theta = exp(fmin(fmax(l, SBP_A), SBP_B));
        s.dth_dmu = 0.0;
        s.dth_dls = 0.0;
    } else {
        s.theta = exp(l);
        s.dth_dmu = mu_clamped ? 0.0 : s.theta * (1.0 + sigma * dz_dmu);
        s.dth_dls = ls_clamped ? 0.0 : s.theta * (sigma * z + sigma * dz_dls);
    }
    return s;
}

// log(Phi(hi - s) - Phi(lo - s)) + s^2/2 for lo < hi, split as r + q where q holds the
// large quadratic part, so that differences over s can cancel it exactly.  With
// lp = lo - s, hp = hi - s:
//   kind 0, hp <= 0: log Phi(hp) = L(hp) - hp^2/2 and s^2/2 - hp^2/2 = hi (s - hi/2) = q;
//                    Phi(lp)/Phi(hp) = exp(L(lp) - L(hp) - (lo - hi)(lo + hi - 2s)/2)
//   kind 1, lp >= 0: mirror, Phi(hp) - Phi(lp) = Phi(-lp) - Phi(-hp), q = lo (s - lo/2)
//   kind 2, else   : Phi(hp) - Phi(lp) = (erf(hp/sqrt2) + erf(-lp/sqrt2)) / 2 (both terms
//                    >= 0), q = s^2/2
struct LogMass {
    double r, q;
    int kind;
};

__device__ LogMass sbp_log_mass(double lo, double hi, double s) {
    const double lp = lo - s, hp = hi - s;
    LogMass m;
    if (hp <= 0.0) {
        const double lh = pk_log_cdf_scaled(hp);
        const double e = pk_log_cdf_scaled(lp) - lh - 0.5 * (lo - hi) * (lo + hi - 2.0 * s);
        m.r = lh + log(-expm1(e));
        m.q = hi * (s - 0.5 * hi);
        m.kind = 0;
    } else if (lp >= 0.0) {
        const double ll = pk_log_cdf_scaled(-lp);
        const double e = pk_log_cdf_scaled(-hp) - ll - 0.5 * (lo - hi) * (2.0 * s - lo - hi);
        m.r = ll + log(-expm1(e));
        m.q = lo * (s - 0.5 * lo);
        m.kind = 1;
    } else {
        m.r = log(0.5 * (erf(hp * PK_SQRT1_2) + erf(-lp * PK_SQRT1_2)));
        m.q = 0.5 * s * s;
        m.kind = 2;
    }
    return m;
}

// q(sa) - q(sb): exact in the shift when both parts are of the same kind.
__device__ double sbp_q_diff(const LogMass& a, const LogMass& b, double lo, double hi, double sa,
                             double sb) {
    if (a.kind != b.kind) return a.q - b.q;
    if (a.kind == 0) return hi * (sa - sb);
    if (a.kind == 1) return lo * (sa - sb);
    return 0.5 * (sa - sb) * (sa + sb);
}

// Entropy of the standard normal truncated to [alpha, beta]:
//   H = log(sqrt(2 pi e) Z) + [alpha phi(alpha) - beta phi(beta)] / (2 Z).
// For beta <= 0 (lower tail) with r = Mills ratio Phi(beta)/phi(beta),
// rho = Phi(alpha)/Phi(beta), M = 1 - rho, G = 1 + beta r (>= 0):
//   phi(beta)/Z = 1/(r M),  phi(alpha)/Z = exp(-(alpha-beta)(alpha+beta)/2)/(r M),
//   -beta^2/2 - beta phi(beta)/(2Z) = -beta (G - beta r rho) / (2 r M)
// so H = log sqrt(2 pi) + 1/2 + L(beta) + log M - beta (G - beta r rho)/(2 r M)
//        + alpha exp(-(alpha-beta)(alpha+beta)/2) / (2 r M),
// a sum of moderate terms.  alpha >= 0 is the mirror image, H(alpha, beta) = H(-beta, -alpha).
__device__ double sbp_trunc_entropy(double alpha, double beta) {
    if (alpha >= 0.0) {
        const double t = alpha;
        alpha = -beta;
        beta = -t;
    }
    if (beta <= 0.0) {
        const double lb = pk_log_cdf_scaled(beta);
        const double q = 0.5 * (alpha - beta) * (alpha + beta);  // >= 0
        const double e = pk_log_cdf_scaled(alpha) - lb - q;      // log rho <= 0
        const double m = -expm1(e);
        const double rho = exp(e);
        const double t = -beta * PK_SQRT1_2;
        const double r = PK_SQRT_PI_OVER_2 * erfcx(t);
        const double g = pk_mills_gap(t);
        const double rm = r * m;
        return PK_LOG_SQRT_2PI + 0.5 + lb + log(m) - beta * (g - beta * r * rho) / (2.0 * rm) +
               alpha * exp(-q) / (2.0 * rm);
    }
    const double z = 0.5 * (erf(beta * PK_SQRT1_2) + erf(-alpha * PK_SQRT1_2));
    const double pa = pk_pdf(alpha), pb = pk_pdf(beta);
    const double ta = pa == 0.0 ? 0.0 : alpha * pa;
    const double tb = pb == 0.0 ? 0.0 : beta * pb;
    return PK_LOG_SQRT_2PI + 0.5 + log(z) + (ta - tb) / (2.0 * z);
}

struct SbpStats {
    double mean, snr, kl;
};

// ---- Var/E^2 of a tightly concentrated theta (the centred form of cpu_ref sbp_closed) ----
// When Var/E^2 < SBP_DIRECT_VAR_MIN the log-moment second difference d above has lost its
// digits; then, with K(s) = log E[exp(s log theta)],
//   d = K(2) - 2K(1) + K(0) = int_0^2 w(s) K''(s) ds,  w(s) = min(s, 2 - s),
//   K''(s) = sigma^2 V(alpha - s sigma, beta - s sigma),
// V the variance of N(0,1) truncated to an interval, integrated by 12-point Gauss-Legendre
// on [0, 1] and [1, 2] (the integrand is positive and smooth on each half).
#define SBP_DIRECT_VAR_MIN 1e-3
#define SBP_CF_DEPTH 64
#define SBP_LOWER_TAIL_Y (-4.0 * 1.41421356237309504880)

// 12-point Gauss-Legendre on [-1, 1]: nodes +-x[k], weights w[k].
__device__ __forceinline__ double sbp_gl_x(int k) {
    const double x[6] = {0.1252334085114689, 0.3678314989981802, 0.5873179542866174,
                         0.7699026741943047, 0.9041172563704749, 0.9815606342467193};
    return x[k];
}
__device__ __forceinline__ double sbp_gl_w(int k) {
    const double w[6] = {0.2491470458134028, 0.2334925365383548, 0.2031674267230659,
                         0.1600783285433462, 0.1069393259953184, 0.04717533638651183};
    return w[k];
}

__device__ __forceinline__ double sbp_closest_to_zero(double l, double u) {
    return u <= 0.0 ? u : (l >= 0.0 ? l : 0.0);
}

// Phi(x)/phi(x).
__device__ __forceinline__ double sbp_cdf_over_pdf(double x) {
    return PK_SQRT_PI_OVER_2 * erfcx(-x * PK_SQRT1_2);
}

// log Z of N(0,1) on [l, u] (cpu_ref truncated::log_mass): narrow intervals by
// Gauss-Legendre, one-sided tails through Mills ratios, the rest through erf.
__device__ double sbp_trunc_log_z(double l, double u) {
    const double m = sbp_closest_to_zero(l, u);
    double r;
    if ((u - l) * fmax(fabs(m), 1.0) < 0.5) {
        const double half = 0.5 * (u - l), mid = 0.5 * (u + l);
        double acc = 0.0;
        for (int k = 0; k < 6; ++k) {
            const double t0 = mid - half * sbp_gl_x(k), t1 = mid + half * sbp_gl_x(k);
            acc += sbp_gl_w(k) * (exp(-0.5 * (t0 - m) * (t0 + m)) + exp(-0.5 * (t1 - m) * (t1 + m)));
        }
        r = log(acc * half) - PK_LOG_SQRT_2PI;
    } else if (u <= 0.0 || l >= 0.0) {
        // lower tail [l, u] (upper tail mirrored to [-u, -l]), m = the end nearest 0
        const double lo = u <= 0.0 ? l : -u, hi = u <= 0.0 ? u : -l;
        const double mh = sbp_cdf_over_pdf(hi);
        const double rho = sbp_cdf_over_pdf(lo) / mh * exp(0.5 * (hi - lo) * (hi + lo));
        r = log(mh) + log1p(-rho) - PK_LOG_SQRT_2PI;
    } else {
        const double tails = 0.5 * erfc(u * PK_SQRT1_2) + 0.5 * erfc(-l * PK_SQRT1_2);
        r = tails <= 0.5 ? log1p(-tails) : log(0.5 * (erf(u * PK_SQRT1_2) + erf(-l * PK_SQRT1_2)));
    }
    return -0.5 * m * m + r;
}

// Variance of N(0,1) truncated to [l, u] (cpu_ref truncated::truncated_variance):
//   V = 1 + l r_l - u r_u - (r_l - r_u)^2,  r_t = phi(t)/Z,
// with the centred Gauss-Legendre moments on narrow intervals and the continued fraction
// 2 T1 (T2 - T1) for a one-sided tail, where the direct form cancels.
__device__ double sbp_trunc_var(double l, double u) {
    const double m = sbp_closest_to_zero(l, u);
    if ((u - l) * fmax(fabs(m), 1.0) < 0.5) {
        const double mid = 0.5 * (l + u), half = 0.5 * (u - l);
        double s0 = 0.0, s1 = 0.0, s2 = 0.0;
        for (int k = 0; k < 6; ++k) {
            for (int side = -1; side <= 1; side += 2) {
                const double dd = side * half * sbp_gl_x(k), t = mid + dd;
                const double g = sbp_gl_w(k) * exp(-0.5 * (t - m) * (t + m));
                s0 += g;
                s1 += g * dd;
                s2 += g * dd * dd;
            }
        }
        const double e1 = s1 / s0;
        return fmax(s2 / s0 - e1 * e1, 0.0);
    }
    if (u <= SBP_LOWER_TAIL_Y || l >= -SBP_LOWER_TAIL_Y) {
        const double lo = u <= SBP_LOWER_TAIL_Y ? l : -u, hi = u <= SBP_LOWER_TAIL_Y ? u : -l;
        const double log_rho = log(sbp_cdf_over_pdf(lo)) - log(sbp_cdf_over_pdf(hi)) +
                               0.5 * (hi - lo) * (hi + lo);
        if (log_rho <= -39.0) {
            const double z = -hi * PK_SQRT1_2;
            double t = 0.0;
            for (int n = SBP_CF_DEPTH; n >= 2; --n) t = (0.5 * (double)n) / (z + t);
            const double t1 = 0.5 / (z + t);
            return 2.0 * t1 * (t - t1);
        }
    }
    const double log_z = sbp_trunc_log_z(l, u);
    const double r_l = exp(-0.5 * l * l - PK_LOG_SQRT_2PI - log_z);
    const double r_u = exp(-0.5 * u * u - PK_LOG_SQRT_2PI - log_z);
    const double lr = r_l == 0.0 ? 0.0 : l * r_l;
    const double ur = r_u == 0.0 ? 0.0 : u * r_u;
    return fmax(1.0 + lr - ur - (r_l - r_u) * (r_l - r_u), 0.0);
}

// K(2) - 2K(1) + K(0) by the integral above.
__device__ double sbp_log_moment_excess_integral(double alpha, double beta, double sigma) {
    double acc = 0.0;
    for (int k = 0; k < 6; ++k) {
        for (int side = -1; side <= 1; side += 2) {
            const double node = 0.5 + 0.5 * side * sbp_gl_x(k);  // in (0, 1)
            acc += 0.5 * sbp_gl_w(k) * node *
                   sbp_trunc_var(alpha - node * sigma, beta - node * sigma);
            acc += 0.5 * sbp_gl_w(k) * (1.0 - node) *
                   sbp_trunc_var(alpha - (1.0 + node) * sigma, beta - (1.0 + node) * sigma);
        }
    }
    return sigma * sigma * acc;
}

// E[theta]   = exp(mu + sigma^2/2) [Phi(sigma - alpha) - Phi(sigma - beta)] / Z
//            = exp(mu + m(sigma) - m(0)),   m(s) = log_mass(alpha, beta, s)
// E[theta^2] = exp(2 mu + m(2 sigma) - m(0))
// d = log E[theta^2] - 2 log E[theta] = m(2 sigma) - 2 m(sigma) + m(0) (mu cancels); the
// quadratic parts of m cancel exactly (see sbp_q_diff), leaving differences of moderate
// numbers.  Var = E^2 expm1(d), SNR = 1/sqrt(expm1(d)); where expm1(d) < SBP_DIRECT_VAR_MIN
// it is taken from sbp_log_moment_excess_integral instead, and SNR is reported as
// SBP_SNR_MAX where it would exceed it.
// KL = max(0, log(B - A) - log sigma - H(alpha, beta)).
__device__ SbpStats sbp_stats(double mu_in, double log_sigma) {
    const double mu = fmin(fmax(mu_in, SBP_PARAM_MIN), SBP_PARAM_MAX);
    const double ls = fmin(fmax(log_sigma, SBP_PARAM_MIN), SBP_PARAM_MAX);
    const double sigma = exp(ls);
    const double alpha = (SBP_A - mu) / sigma;
    const double beta = (SBP_B - mu) / sigma;
    const LogMass m0 = sbp_log_mass(alpha, beta, 0.0);
    const LogMass m1 = sbp_log_mass(alpha, beta, sigma);
    const LogMass m2 = sbp_log_mass(alpha, beta, 2.0 * sigma);
    const double q10 = sbp_q_diff(m1, m0, alpha, beta, sigma, 0.0);
    const double q21 = sbp_q_diff(m2, m1, alpha, beta, 2.0 * sigma, sigma);
    SbpStats st;
    st.mean = exp(mu + (m1.r - m0.r) + q10);
    const double d = (m2.r - 2.0 * m1.r + m0.r) + (q21 - q10);
    double ratio = expm1(d);
    // Concentrated theta: the second difference has lost its digits; integrate it.
    if (ratio < SBP_DIRECT_VAR_MIN) ratio = expm1(sbp_log_moment_excess_integral(alpha, beta, sigma));
    st.snr = ratio > 1.0 / (SBP_SNR_MAX * SBP_SNR_MAX) ? fmin(rsqrt(ratio), SBP_SNR_MAX) : SBP_SNR_MAX;
    // KL >= 0 exactly; rounding in near-uniform cases (width of [alpha, beta] ~ 1e-8) can
    // leave a residue of order 1e-8 below zero.
    st.kl = fmax(log(SBP_B - SBP_A) - ls - sbp_trunc_entropy(alpha, beta), 0.0);
    return st;
}
