//! Self-attention pieces shared by every block: rotary tables, additive biases (padding, causal,
//! ALiBi, arbitrary masks) and the chunked attention kernel.
//!
//! Attention is computed a chunk of queries at a time (`ModelConfig::attention_chunk`): the scores
//! held at once are `batch x heads x chunk x length`, not `length x length`. Under a causal mask a
//! chunk only reads the keys up to its last query, which halves the work of a decoder.

use std::ops::Range;

use burn::tensor::{activation::softmax, Device, Tensor, TensorData};

/// The additive bias that removes a key from a query's softmax. Finite, so that a query that may
/// see nothing (a context token's query stream in permutation LM) gets a uniform, unused row
/// rather than NaN.
pub const MASKED: f32 = -1e9;

/// Which key positions each query position may attend to, as plain host-side data (the batch
/// pipeline's output). `true` means "may attend".
#[derive(Debug, Clone, PartialEq)]
pub enum AttentionPattern {
    /// Every real token sees every real token.
    Bidirectional,
    /// Token i sees tokens `<= i`.
    Causal,
    /// An explicit `rows x len x len` mask (`[r][i][j]`: may i see j), e.g. the two streams of
    /// permutation LM.
    Dense(Vec<bool>),
}

/// A batch's attention mask: padding plus pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMask {
    /// `rows x len`, true for real tokens; `None` when nothing is padded.
    pub padding: Option<Vec<bool>>,
    /// The pattern among real tokens.
    pub pattern: AttentionPattern,
}

/// The bias and position tables of one forward pass, built once and shared by all layers.
#[derive(Debug, Clone)]
pub(crate) struct AttentionBias {
    /// `[rows, 1, 1, len]`: `MASKED` on padded keys.
    pub padding: Option<Tensor<4>>,
    /// `[rows or 1, heads or 1, len, len]`: pattern and ALiBi, summed.
    pub rows: Option<Tensor<4>>,
    /// Whether the pattern is causal (chunks then skip the keys after their last query).
    pub causal: bool,
}

impl AttentionBias {
    /// Builds the bias of `mask` for `rows x len` inputs. `alibi` holds per-head slopes.
    pub fn new(
        mask: &AttentionMask,
        rows: usize,
        len: usize,
        alibi: Option<&[f32]>,
        device: &Device,
    ) -> Self {
        let padding = mask.padding.as_ref().and_then(|real| {
            if real.iter().all(|&r| r) {
                return None;
            }
            let bias: Vec<f32> = real.iter().map(|&r| if r { 0.0 } else { MASKED }).collect();
            Some(Tensor::<4>::from_data(
                TensorData::new(bias, [rows, 1, 1, len]),
                device,
            ))
        });
        let causal = mask.pattern == AttentionPattern::Causal;
        let pattern: Option<(Vec<f32>, usize)> = match &mask.pattern {
            AttentionPattern::Bidirectional => None,
            AttentionPattern::Causal => Some((
                (0..len * len)
                    .map(|ij| if ij % len <= ij / len { 0.0 } else { MASKED })
                    .collect(),
                1,
            )),
            AttentionPattern::Dense(allowed) => Some((
                allowed
                    .iter()
                    .map(|&a| if a { 0.0 } else { MASKED })
                    .collect(),
                rows,
            )),
        };
        let alibi = alibi.map(|slopes| {
            let heads = slopes.len();
            let mut bias = Vec::with_capacity(heads * len * len);
            for &slope in slopes {
                for i in 0..len {
                    for j in 0..len {
                        // Causal ALiBi penalises distance to the past; the bidirectional form
                        // (as in BiMamba/ALiBi encoders) penalises distance both ways.
                        bias.push(-slope * (i as f32 - j as f32).abs());
                    }
                }
            }
            Tensor::<4>::from_data(TensorData::new(bias, [1, heads, len, len]), device)
        });
        let pattern = pattern.map(|(bias, n)| {
            Tensor::<4>::from_data(TensorData::new(bias, [n, 1, len, len]), device)
        });
        let rows = match (pattern, alibi) {
            (None, None) => None,
            (Some(p), None) => Some(p),
            (None, Some(a)) => Some(a),
            (Some(p), Some(a)) => Some(p + a),
        };
        AttentionBias {
            padding,
            rows,
            causal,
        }
    }
}

/// ALiBi slopes for `heads` heads (the geometric sequence of the ALiBi paper, with its rule for
/// head counts that are not powers of two).
pub fn alibi_slopes(heads: usize) -> Vec<f32> {
    fn power_of_two(n: usize) -> Vec<f32> {
        let start = 2f32.powf(-8.0 / n as f32);
        (0..n).map(|i| start.powi(i as i32 + 1)).collect()
    }
    if heads.is_power_of_two() {
        return power_of_two(heads);
    }
    let lower = 1 << heads.ilog2();
    let mut slopes = power_of_two(lower);
    let extra = power_of_two(2 * lower);
    slopes.extend(extra.into_iter().step_by(2).take(heads - lower));
    slopes
}

/// Rotary `cos` and `sin` for every position the model accepts, `[max_positions, head_dim]`
/// each (rotate-half layout: the frequencies repeat over the two halves). Computed once, when the
/// model is built; a forward pass selects its positions' rows.
#[derive(burn::module::Module, Debug)]
pub struct RotaryTables {
    /// Cosines.
    pub cos: Tensor<2>,
    /// Sines.
    pub sin: Tensor<2>,
}

impl RotaryTables {
    /// Tables for positions `0..max_positions`.
    pub fn new(max_positions: usize, head_dim: usize, theta: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
            .collect();
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        for p in 0..max_positions {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = p as f64 * f;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [max_positions, head_dim];
        RotaryTables {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// The rows of `positions` (`[rows, len]`), as `[rows, 1, len, head_dim]` for broadcasting
    /// over heads.
    pub(crate) fn select(&self, positions: Tensor<2, burn::tensor::Int>) -> (Tensor<4>, Tensor<4>) {
        let [rows, len] = positions.dims();
        let [_, head_dim] = self.cos.dims();
        let flat = positions.reshape([rows * len]);
        let pick = |t: &Tensor<2>| {
            t.clone()
                .select(0, flat.clone())
                .reshape([rows, 1, len, head_dim])
        };
        (pick(&self.cos), pick(&self.sin))
    }
}

/// Applies rotary embeddings to `x` `[rows, heads, len, head_dim]`.
pub(crate) fn apply_rotary(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, l, d] = x.dims();
    let half = d / 2;
    let x1 = x.clone().slice([0..b, 0..h, 0..l, 0..half]);
    let x2 = x.clone().slice([0..b, 0..h, 0..l, half..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// softmax(q kᵀ + bias) v, a chunk of queries at a time. `q` is already scaled.
///
/// # Shapes
/// - `q`, `k`, `v`: `[rows, heads, len, head_dim]`
/// - output: `[rows, heads, len, head_dim]`
pub(crate) fn chunked_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: &AttentionBias,
    chunk: usize,
) -> Tensor<4> {
    let [b, h, l, d] = q.dims();
    let kt = k.swap_dims(2, 3);
    if l <= chunk {
        return attend_rows(q, kt, v, bias, 0..l, l);
    }
    let mut outputs = Vec::with_capacity(l.div_ceil(chunk));
    for start in (0..l).step_by(chunk) {
        let end = (start + chunk).min(l);
        let keys = if bias.causal { end } else { l };
        let q_chunk = q.clone().slice([0..b, 0..h, start..end, 0..d]);
        let k_chunk = kt.clone().slice([0..b, 0..h, 0..d, 0..keys]);
        let v_chunk = v.clone().slice([0..b, 0..h, 0..keys, 0..d]);
        outputs.push(attend_rows(
            q_chunk,
            k_chunk,
            v_chunk,
            bias,
            start..end,
            keys,
        ));
    }
    Tensor::cat(outputs, 2)
}

/// softmax(q kᵀ + bias) v through the backend's fused attention (burn Flex: naive for short
/// sequences, tiled flash attention with an online softmax for long ones, so the score matrix is
/// never held whole). Used where no gradient is needed: burn has no backward for it on Flex, and
/// under autodiff it would decompose into the same operations as [`chunked_attention`].
///
/// # Shapes
/// - `q`, `k`, `v`: `[rows, heads, len, head_dim]`, `q` already scaled
/// - output: `[rows, heads, len, head_dim]`
pub(crate) fn fused_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    bias: &AttentionBias,
) -> Tensor<4> {
    let [b, _, l, _] = q.dims();
    let padding = bias.padding.clone().map(|p| p.expand([b, 1, l, l]));
    let combined = match (bias.rows.clone(), padding) {
        (None, None) => None,
        (Some(r), None) => Some(r),
        (None, Some(p)) => Some(p),
        (Some(r), Some(p)) => Some(r + p),
    };
    let options = burn::tensor::ops::AttentionModuleOptions {
        scale: Some(1.0),
        ..Default::default()
    };
    burn::tensor::module::attention(q, k, v, None, combined, options)
}

fn attend_rows(
    q: Tensor<4>,
    kt: Tensor<4>,
    v: Tensor<4>,
    bias: &AttentionBias,
    rows: Range<usize>,
    keys: usize,
) -> Tensor<4> {
    let mut scores = q.matmul(kt);
    if let Some(rows_bias) = &bias.rows {
        let [n, h, l, _] = rows_bias.dims();
        let full = rows.start == 0 && rows.end == l && keys == l;
        scores = scores
            + if full {
                rows_bias.clone()
            } else {
                rows_bias.clone().slice([0..n, 0..h, rows, 0..keys])
            };
    }
    if let Some(padding) = &bias.padding {
        let [n, _, _, l] = padding.dims();
        scores = scores
            + if keys == l {
                padding.clone()
            } else {
                padding.clone().slice([0..n, 0..1, 0..1, 0..keys])
            };
    }
    softmax(scores, 3).matmul(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibi_slopes_follow_the_paper() {
        let s = alibi_slopes(8);
        assert_eq!(s.len(), 8);
        assert!((s[0] - 0.5).abs() < 1e-6 && (s[7] - 1.0 / 256.0).abs() < 1e-6);
        // 6 heads: the 4 slopes of 4 heads, then every other slope of 8 heads.
        let s6 = alibi_slopes(6);
        assert_eq!(&s6[..4], &alibi_slopes(4)[..]);
        assert_eq!(s6[4], alibi_slopes(8)[0]);
    }

    #[test]
    fn chunked_attention_equals_one_shot() {
        let device = Device::flex();
        let (b, h, l, d) = (2, 2, 7, 4);
        let data = |seed: u32| {
            let v: Vec<f32> = (0..b * h * l * d)
                .map(|i| {
                    (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 1000) as f32 / 500.0 - 1.0
                })
                .collect();
            Tensor::<4>::from_data(TensorData::new(v, [b, h, l, d]), &device)
        };
        let (q, k, v) = (data(1), data(2), data(3));
        for pattern in [AttentionPattern::Bidirectional, AttentionPattern::Causal] {
            let mut padding = vec![true; b * l];
            padding[l - 1] = false;
            let mask = AttentionMask {
                padding: Some(padding),
                pattern,
            };
            let slopes = alibi_slopes(h);
            let bias = AttentionBias::new(&mask, b, l, Some(&slopes), &device);
            let one = chunked_attention(q.clone(), k.clone(), v.clone(), &bias, 64);
            let chunked = chunked_attention(q.clone(), k.clone(), v.clone(), &bias, 3);
            let fused = fused_attention(q.clone(), k.clone(), v.clone(), &bias);
            let diff = (one.clone() - chunked).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "{diff}");
            let diff = (one - fused).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "fused: {diff}");
        }
    }
}
