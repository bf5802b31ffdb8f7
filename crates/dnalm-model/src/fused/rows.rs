//! The element-wise stages of the fused encoder layer, one row at a time, compiled for AVX-512
//! and AVX2 as well as the baseline target and chosen at run time.
//!
//! Why: the workspace builds for baseline x86-64 (SSE2, 4 lanes), and float reductions written
//! as one accumulator never vectorise (the compiler may not reorder float additions). Here every
//! reduction keeps [`LANES`] partial results, the math is branch-free ([`fast_exp`],
//! [`normal_cdf_pdf`]), and [`multiversion!`] compiles each function again with the wider
//! instruction sets. Measured on the training bench (AVX-512 Xeon): softmax alone was 16% of a
//! step before this.

// `#[target_feature]` functions are unsafe to call; each call is guarded by the matching
// run-time feature check in `multiversion!`.
#![allow(unsafe_code)]

/// Partial sums (or maxima) kept per reduction: one AVX-512 register of f32.
const LANES: usize = 16;

/// Defines `fn $name(args) -> ret` that runs `$body` compiled for the best of AVX-512, AVX2+FMA
/// and the baseline that the CPU supports.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// `e^x` for f32, branch-free so that loops over slices vectorise (the libm call does not).
/// Cephes' `expf` polynomial on `x - k ln 2`, scaled by `2^k` built in the exponent bits;
/// relative error below 3e-7 on `[-87, 88]`. Inputs below -87.3 (masked attention scores) give
/// about 1e-38 instead of 0, which no softmax row can see.
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let k_round = x * std::f32::consts::LOG2_E + ROUND;
    let k = k_round - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // `2^k` from the bits of `k + ROUND`, whose low mantissa bits hold `k`: integer operations
    // only, because a float-to-int cast (`k as i32`, saturating) does not vectorise.
    y * f32::from_bits(k_round.to_bits().wrapping_add(127) << 23)
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / sqrt(2 pi)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// The standard normal CDF `Φ(x)` and density `φ(x)` together (they share `e^(-x²/2)`), with
/// the error function of Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), branch-free
/// like [`fast_exp`].
#[inline(always)]
pub(crate) fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    let z = (x * FRAC_1_SQRT_2).abs();
    let e = fast_exp(-0.5 * x * x);
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let erf = f32::copysign(1.0 - poly * e, x);
    (0.5 * (1.0 + erf), e * INV_SQRT_2PI)
}

/// Sum of `f(a[i], b[i], c[i])` over three equally long slices, in [`LANES`] partial sums
/// (slices rather than indices, so that the loop has no bounds checks and vectorises).
#[inline(always)]
pub(crate) fn lane_sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let mut acc = [0.0f32; LANES];
    let (ac, bc, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let (ar, br, cr) = (ac.remainder(), bc.remainder(), cc.remainder());
    for ((x, y), z) in ac.zip(bc).zip(cc) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l], z[l]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for ((&x, &y), &z) in ar.iter().zip(br).zip(cr) {
        s += f(x, y, z);
    }
    s
}

/// Sum of a slice.
#[inline(always)]
fn lane_sum(a: &[f32]) -> f32 {
    lane_sum3(a, a, a, |x, _, _| x)
}

/// Maximum of a slice, in [`LANES`] partial maxima.
#[inline(always)]
fn lane_max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    let m = acc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    chunks.remainder().iter().fold(m, |m, &x| m.max(x))
}

multiversion! {
    /// LayerNorm of one row: writes `xhat` and `gamma * xhat + beta`; returns `1 / std`.
    pub(crate) fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, xhat: &mut [f32], out: &mut [f32]) -> f32 {
        let d = x.len();
        let mean = lane_sum(x) / d as f32;
        let var = lane_sum3(x, x, x, |v, _, _| (v - mean) * (v - mean)) / d as f32;
        let rs = 1.0 / (var + eps).sqrt();
        for j in 0..d {
            let h = (x[j] - mean) * rs;
            xhat[j] = h;
            out[j] = h * gamma[j] + beta[j];
        }
        rs
    }
}

multiversion! {
    /// LayerNorm backward of one row: adds the input gradient to `acc`.
    pub(crate) fn layer_norm_backward_row(g: &[f32], gamma: &[f32], xhat: &[f32], rstd: f32, acc: &mut [f32]) {
        let d = g.len();
        let mean_g = lane_sum3(g, gamma, g, |a, b, _| a * b) / d as f32;
        let mean_gx = lane_sum3(g, gamma, xhat, |a, b, c| a * b * c) / d as f32;
        for j in 0..d {
            acc[j] += rstd * (g[j] * gamma[j] - mean_g - xhat[j] * mean_gx);
        }
    }
}

multiversion! {
    /// Softmax of one row of scores in place, after adding `bias`; returns its log-sum-exp.
    pub(crate) fn softmax_row(row: &mut [f32], bias: Option<&[f32]>) -> f32 {
        if let Some(bias) = bias {
            for (s, b) in row.iter_mut().zip(bias) {
                *s += b;
            }
        }
        let max = lane_max(row);
        for s in row.iter_mut() {
            *s = fast_exp(*s - max);
        }
        let sum = lane_sum(row);
        let inv = 1.0 / sum;
        for s in row.iter_mut() {
            *s *= inv;
        }
        max + sum.ln()
    }
}

multiversion! {
    /// Probabilities of one row recomputed from its scores, `bias` and log-sum-exp, in place.
    pub(crate) fn probabilities_row(row: &mut [f32], bias: Option<&[f32]>, lse: f32) {
        match bias {
            Some(bias) => {
                for (s, b) in row.iter_mut().zip(bias) {
                    *s = fast_exp(*s + b - lse);
                }
            }
            None => {
                for s in row.iter_mut() {
                    *s = fast_exp(*s - lse);
                }
            }
        }
    }
}

multiversion! {
    /// Softmax backward of one row: `dp <- p * (dp - delta)`.
    pub(crate) fn softmax_backward_row(dp: &mut [f32], p: &[f32], delta: f32) {
        for (g, &pv) in dp.iter_mut().zip(p) {
            *g = pv * (*g - delta);
        }
    }
}

multiversion! {
    /// Dot product.
    pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
        lane_sum3(a, b, a, |x, y, _| x * y)
    }
}

multiversion! {
    /// The feed-forward activation of one row: `u += bias`, `act = gelu(u)` (exact, erf).
    pub(crate) fn bias_gelu_row(u: &mut [f32], bias: &[f32], act: &mut [f32]) {
        for j in 0..u.len() {
            let v = u[j] + bias[j];
            u[j] = v;
            act[j] = v * normal_cdf_pdf(v).0;
        }
    }
}

multiversion! {
    /// GELU backward of one row: `g *= gelu'(u) = Φ(u) + u φ(u)`.
    pub(crate) fn gelu_backward_row(g: &mut [f32], u: &[f32]) {
        for j in 0..g.len() {
            let (cdf, pdf) = normal_cdf_pdf(u[j]);
            g[j] *= cdf + u[j] * pdf;
        }
    }
}

multiversion! {
    /// A residual branch of one row: `branch = skip + mask * (branch + bias)`.
    pub(crate) fn residual_row(branch: &mut [f32], skip: &[f32], bias: &[f32], mask: Option<&[f32]>) {
        match mask {
            Some(m) => {
                for j in 0..branch.len() {
                    branch[j] = skip[j] + m[j] * (branch[j] + bias[j]);
                }
            }
            None => {
                for j in 0..branch.len() {
                    branch[j] = skip[j] + branch[j] + bias[j];
                }
            }
        }
    }
}

multiversion! {
    /// `acc += v`, element-wise.
    pub(crate) fn add_assign(acc: &mut [f32], v: &[f32]) {
        for (a, &x) in acc.iter_mut().zip(v) {
            *a += x;
        }
    }
}

multiversion! {
    /// `acc_gx += g * x` and `acc_g += g`, element-wise (LayerNorm parameter gradients).
    pub(crate) fn add_product_assign(acc_gx: &mut [f32], acc_g: &mut [f32], g: &[f32], x: &[f32]) {
        for j in 0..g.len() {
            acc_gx[j] += g[j] * x[j];
            acc_g[j] += g[j];
        }
    }
}

multiversion! {
    /// `a *= b`, element-wise.
    pub(crate) fn mul_assign(a: &mut [f32], b: &[f32]) {
        for (x, &y) in a.iter_mut().zip(b) {
            *x *= y;
        }
    }
}

/// Rotate-half rotary embedding of one head vector, in place: `x cos + rot(x) sin` with
/// `rot([x1, x2]) = [-x2, x1]`.
#[inline(always)]
fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at_mut(half);
    let (c1, c2) = cos.split_at(half);
    let (s1, s2) = sin.split_at(half);
    for j in 0..half {
        let (a, b) = (x1[j], x2[j]);
        x1[j] = a * c1[j] - b * s1[j];
        x2[j] = b * c2[j] + a * s2[j];
    }
}

/// The transpose of [`rotate`] (its backward pass), in place: `g cos + rotᵀ(g sin)` with
/// `rotᵀ([y1, y2]) = [y2, -y1]`.
#[inline(always)]
fn rotate_back(g: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = g.len() / 2;
    let (g1, g2) = g.split_at_mut(half);
    let (c1, c2) = cos.split_at(half);
    let (s1, s2) = sin.split_at(half);
    for j in 0..half {
        let (a, b) = (g1[j], g2[j]);
        g1[j] = a * c1[j] + b * s2[j];
        g2[j] = b * c2[j] - a * s1[j];
    }
}

multiversion! {
    /// One token's `[q | k | v]` row after the projection: adds the biases, rotates the query and
    /// key heads (`rotary` = that token's `cos`, `sin`), and scales the queries.
    pub(crate) fn qkv_row(row: &mut [f32], bias: &[f32], rotary: Option<(&[f32], &[f32])>, head_dim: usize, scale: f32) {
        let d = row.len() / 3;
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
        if let Some((cos, sin)) = rotary {
            for head in row[..2 * d].chunks_exact_mut(head_dim) {
                rotate(head, cos, sin);
            }
        }
        for v in &mut row[..d] {
            *v *= scale;
        }
    }
}

multiversion! {
    /// The backward pass of [`qkv_row`] on one gradient row (the bias gradient is summed apart).
    pub(crate) fn qkv_backward_row(row: &mut [f32], rotary: Option<(&[f32], &[f32])>, head_dim: usize, scale: f32) {
        let d = row.len() / 3;
        for v in &mut row[..d] {
            *v *= scale;
        }
        if let Some((cos, sin)) = rotary {
            for head in row[..2 * d].chunks_exact_mut(head_dim) {
                rotate_back(head, cos, sin);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_libm() {
        let mut worst = 0.0f32;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let rel = (fast_exp(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(fast_exp(-1e9) < 1e-37 && fast_exp(-1e9) >= 0.0);
    }

    #[test]
    fn gelu_and_its_derivative_match_erf() {
        let gelu64 = |v: f64| 0.5 * v * (1.0 + libm::erf(v / 2f64.sqrt()));
        let xs: Vec<f32> = (-8000..8000).map(|i| i as f32 / 1000.0).collect();
        let mut u = xs.clone();
        let mut act = vec![0.0; xs.len()];
        bias_gelu_row(&mut u, &vec![0.0; xs.len()], &mut act);
        let mut grad = vec![1.0; xs.len()];
        gelu_backward_row(&mut grad, &xs);
        for ((&x, &a), &g) in xs.iter().zip(&act).zip(&grad) {
            let exact = gelu64(f64::from(x));
            assert!(
                (f64::from(a) - exact).abs() < 1e-6 * (1.0 + exact.abs()),
                "gelu({x})"
            );
            let (x64, h) = (f64::from(x), 1e-4);
            let numeric = (gelu64(x64 + h) - gelu64(x64 - h)) / (2.0 * h);
            assert!((f64::from(g) - numeric).abs() < 1e-5, "gelu'({x})");
        }
    }

    #[test]
    fn softmax_row_normalises_and_returns_log_sum_exp() {
        // 37 entries: two full lanes of 16 and a remainder.
        let scores: Vec<f32> = (0..37).map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.0).collect();
        let bias: Vec<f32> = (0..37)
            .map(|i| if i % 5 == 0 { -1e9 } else { 0.1 })
            .collect();
        let mut row = scores.clone();
        let lse = softmax_row(&mut row, Some(&bias));
        let expect_lse = scores
            .iter()
            .zip(&bias)
            .map(|(s, b)| f64::from(s + b).exp())
            .sum::<f64>()
            .ln();
        assert!((f64::from(lse) - expect_lse).abs() < 1e-5);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(row.iter().step_by(5).all(|&p| p < 1e-30));
        let mut again = scores.clone();
        probabilities_row(&mut again, Some(&bias), lse);
        for (a, b) in again.iter().zip(&row) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn layer_norm_row_normalises() {
        let x: Vec<f32> = (0..40)
            .map(|i| (i as f32 * 0.37).sin() * 3.0 + 1.0)
            .collect();
        let (gamma, beta) = (vec![2.0; 40], vec![0.5; 40]);
        let (mut xhat, mut out) = (vec![0.0; 40], vec![0.0; 40]);
        let rs = layer_norm_row(&x, &gamma, &beta, 1e-5, &mut xhat, &mut out);
        let mean = xhat.iter().sum::<f32>() / 40.0;
        let var = xhat.iter().map(|v| v * v).sum::<f32>() / 40.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
        assert!(rs > 0.0 && (out[3] - (2.0 * xhat[3] + 0.5)).abs() < 1e-6);
    }
}
