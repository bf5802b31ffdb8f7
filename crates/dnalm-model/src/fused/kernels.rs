//! The encoder layer's forward and backward passes on host slices: the arithmetic behind
//! `encoder_layer`, free of burn so that it can be read (and tested) on its own.
//!
//! Why hand-written: burn 0.23's autodiff runs this layer as ~40 separate Flex operations in the
//! forward pass and more in the backward, each allocating (and zeroing, then copying for
//! alignment) a fresh output buffer and making its own pass over memory; softmax, GELU and
//! LayerNorm are each several passes, and the attention scores are kept whole for the backward
//! pass. A profile of the training bench put 16% of a step in page faults of fresh buffers and
//! 8% in scalar `expf` alone. Here one layer is: 4 projection products forward (Q, K and V as
//! one) and 2 per attention head, 8 and 5 backward (one of them recomputing the scores), all
//! through the `gemm` crate as Flex uses it, and one fused pass per row for each element-wise
//! stage (`fused::rows`). Attention is flash-style: the forward pass keeps only each query's
//! log-sum-exp, and the backward pass recomputes the probabilities a chunk of queries at a time,
//! so no `length x length` matrix outlives one chunk of one head.
//!
//! Layout conventions: matrices are row-major `f32`; a weight is `[d_in, d_out]` (burn's `Linear`
//! layout, `y = x W + b`); the `N = rows x len` tokens are the rows of every activation.

// The matrix products go through `gemm`'s raw-pointer API, and the attention tasks write
// disjoint blocks of shared outputs; each unsafe block states why it is sound.
#![allow(unsafe_code)]

use gemm::Parallelism;

use super::rows;
use rayon::prelude::*;

/// Shapes and constants of one layer call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerDims {
    /// Sequences in the batch.
    pub rows: usize,
    /// Tokens per sequence.
    pub len: usize,
    /// Model width.
    pub d_model: usize,
    /// Attention heads (`d_model` must be a multiple).
    pub heads: usize,
    /// Feed-forward width.
    pub d_ffn: usize,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Queries per attention chunk (`ModelConfig::attention_chunk`): the scratch of one task
    /// is `chunk x len` scores.
    pub chunk: usize,
}

impl LayerDims {
    fn tokens(&self) -> usize {
        self.rows * self.len
    }

    fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }

    /// The query scale, `1 / sqrt(head_dim)`.
    fn query_scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }

    fn chunk(&self) -> usize {
        self.chunk.clamp(1, self.len.max(1))
    }
}

/// The layer's parameters. Every list of them (`from_slices`, the gradients, `LayerParams`)
/// uses the order of these fields.
#[derive(Debug, Clone, Copy)]
pub struct LayerWeights<'a> {
    /// Pre-attention LayerNorm scale and shift, `[d]` each.
    pub ln1_gamma: &'a [f32],
    /// See `ln1_gamma`.
    pub ln1_beta: &'a [f32],
    /// Query, key, value and output projections, `[d, d]`, with biases `[d]`.
    pub wq: &'a [f32],
    /// See `wq`.
    pub bq: &'a [f32],
    /// See `wq`.
    pub wk: &'a [f32],
    /// See `wq`.
    pub bk: &'a [f32],
    /// See `wq`.
    pub wv: &'a [f32],
    /// See `wq`.
    pub bv: &'a [f32],
    /// See `wq`.
    pub wo: &'a [f32],
    /// See `wq`.
    pub bo: &'a [f32],
    /// Pre-feed-forward LayerNorm, `[d]` each.
    pub ln2_gamma: &'a [f32],
    /// See `ln2_gamma`.
    pub ln2_beta: &'a [f32],
    /// Feed-forward up projection `[d, f]` and bias `[f]`.
    pub w_up: &'a [f32],
    /// See `w_up`.
    pub b_up: &'a [f32],
    /// Feed-forward down projection `[f, d]` and bias `[d]`.
    pub w_down: &'a [f32],
    /// See `w_down`.
    pub b_down: &'a [f32],
}

impl<'a> LayerWeights<'a> {
    /// Borrows 16 slices given in the order of the fields.
    pub fn from_slices(p: [&'a [f32]; 16]) -> Self {
        LayerWeights {
            ln1_gamma: p[0],
            ln1_beta: p[1],
            wq: p[2],
            bq: p[3],
            wk: p[4],
            bk: p[5],
            wv: p[6],
            bv: p[7],
            wo: p[8],
            bo: p[9],
            ln2_gamma: p[10],
            ln2_beta: p[11],
            w_up: p[12],
            b_up: p[13],
            w_down: p[14],
            b_down: p[15],
        }
    }

    /// `[wq | wk | wv]` as one `[d, 3d]` matrix and `[bq | bk | bv]`, so that the three
    /// projections are one matrix product.
    fn packed_qkv(&self, d: usize) -> (Vec<f32>, Vec<f32>) {
        let mut w = Vec::with_capacity(3 * d * d);
        for i in 0..d {
            for m in [self.wq, self.wk, self.wv] {
                w.extend_from_slice(&m[i * d..(i + 1) * d]);
            }
        }
        let b = [self.bq, self.bk, self.bv].concat();
        (w, b)
    }
}

/// Per-call inputs besides the hidden states and parameters. All optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerExtras<'a> {
    /// Rotary tables, `[N, head_dim]` each (rotate-half layout), for each token's position.
    pub rotary: Option<(&'a [f32], &'a [f32])>,
    /// Additive key bias, `[rows, len]` (`MASKED` on padding).
    pub key_bias: Option<&'a [f32]>,
    /// Dropout masks (0 or `1 / keep`) of the attention and feed-forward branches, `[N, d]`.
    pub dropout: Option<(&'a [f32], &'a [f32])>,
}

impl LayerExtras<'_> {
    /// Token `t`'s rotary `cos` and `sin` rows (`head_dim` each), when there are tables.
    fn rotary_at(&self, t: usize, head_dim: usize) -> Option<(&[f32], &[f32])> {
        let at = t * head_dim..(t + 1) * head_dim;
        self.rotary.map(|(cos, sin)| (&cos[at.clone()], &sin[at]))
    }
}

/// What the backward pass reads from the forward pass.
#[derive(Clone)]
pub struct Saved {
    /// Normalised input of LayerNorm 1 and its inverse standard deviations.
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    /// LayerNorm 1 output (input of the projections).
    a: Vec<f32>,
    /// `[d, 3d]`: the packed projection weights (see `LayerWeights::packed_qkv`).
    wqkv: Vec<f32>,
    /// `[N, 3d]`: queries (rotated and scaled), keys (rotated), values.
    qkv: Vec<f32>,
    /// `[rows, heads, len]`: log-sum-exp of each query's scores.
    lse: Vec<f32>,
    /// `[N, d]`: attention output, heads concatenated.
    attn: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
    /// LayerNorm 2 output.
    c: Vec<f32>,
    /// `[N, f]`: pre-activation and GELU output.
    up: Vec<f32>,
    act: Vec<f32>,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Saved {{ tokens x d: {}, ffn: {} }}",
            self.a.len(),
            self.up.len()
        )
    }
}

/// Gradients of one layer call: the input's, then the parameters' in [`LayerWeights`] order.
#[derive(Debug, Clone)]
pub struct LayerGrads {
    /// `[N, d]`.
    pub input: Vec<f32>,
    /// One per parameter, shaped like it.
    pub params: [Vec<f32>; 16],
}

/// A strided matrix view for `gemm`: element `(i, j)` is at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl View {
    /// A row-major `rows x cols` matrix.
    fn of(data: &[f32], rows: usize, cols: usize) -> View {
        assert!(data.len() >= rows * cols, "view larger than its slice");
        View {
            ptr: data.as_ptr(),
            rows,
            cols,
            rs: cols as isize,
            cs: 1,
        }
    }

    /// Columns `c0..c0 + ncols` of rows `r0..r0 + nrows` of a row-major matrix with `stride`
    /// floats per row.
    fn block(
        data: &[f32],
        stride: usize,
        r0: usize,
        nrows: usize,
        c0: usize,
        ncols: usize,
    ) -> View {
        assert!(
            nrows == 0 || (r0 + nrows - 1) * stride + c0 + ncols <= data.len(),
            "block outside its slice"
        );
        View {
            // SAFETY: in bounds by the assertion (or an empty view that is never read).
            ptr: unsafe { data.as_ptr().add(r0 * stride + c0) },
            rows: nrows,
            cols: ncols,
            rs: stride as isize,
            cs: 1,
        }
    }

    fn t(self) -> View {
        View {
            ptr: self.ptr,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// `dst = a b` (or `dst += a b` with `accumulate`), `dst` being `a.rows x b.cols` with row
/// stride `dst_rs`.
///
/// # Safety
/// `dst` must be valid for writes of the whole `a.rows x b.cols` block at row stride `dst_rs`,
/// and no other thread may touch that block during the call; the views must be in bounds (they
/// are built by `View::of` / `View::block`, which check).
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_rs: usize,
    a: View,
    b: View,
    accumulate: bool,
    par: Parallelism,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for i in 0..a.rows {
                // SAFETY: the caller guarantees the block is writable.
                unsafe { std::ptr::write_bytes(dst.add(i * dst_rs), 0, b.cols) };
            }
        }
        return;
    }
    // SAFETY: forwarded from the caller; strides describe in-bounds views.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}

/// `a b` as a new row-major matrix, using every thread. The buffer is not zeroed first (the
/// product overwrites it): zeroing was 5% of a training step.
fn product(a: View, b: View) -> Vec<f32> {
    let n = a.rows * b.cols;
    let mut out = Vec::<f32>::with_capacity(n);
    // SAFETY: the spare capacity holds `n` floats; gemm (with `accumulate` off, or the zero
    // fill of an empty inner dimension) writes every one of them before `set_len` exposes them,
    // and no reference to the uninitialised memory exists meanwhile.
    unsafe {
        gemm_raw(out.as_mut_ptr(), b.cols, a, b, false, Parallelism::Rayon(0));
        out.set_len(n);
    }
    out
}

/// A raw pointer that parallel tasks writing disjoint blocks may share.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);

impl SharedMut {
    /// The pointer (a method, so that closures capture the `Send + Sync` wrapper, not the field).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}
// SAFETY: only used for disjoint writes, as documented at each use.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

/// Rows per parallel task of the row-wise passes.
const ROW_TASK: usize = 64;

/// Rows per block of the column sums: blocks are summed in parallel, then added in block
/// order, so that the result does not depend on how rayon scheduled them (training must give the
/// same losses run after run).
const SUM_BLOCK: usize = 1024;

/// Column sums of a row-major `[n, cols]` matrix, in parallel over fixed row blocks.
fn column_sums(m: &[f32], cols: usize) -> Vec<f32> {
    let partial: Vec<Vec<f32>> = m
        .par_chunks(SUM_BLOCK * cols)
        .map(|block| {
            let mut s = vec![0.0f32; cols];
            for row in block.chunks_exact(cols) {
                rows::add_assign(&mut s, row);
            }
            s
        })
        .collect();
    let mut total = vec![0.0f32; cols];
    for p in &partial {
        rows::add_assign(&mut total, p);
    }
    total
}

/// Column sums of the products of two row-major `[n, cols]` matrices, and of the first alone:
/// the LayerNorm parameter gradients `(sum g * xhat, sum g)`. Deterministic like
/// [`column_sums`].
fn column_dot_sums(g: &[f32], xhat: &[f32], cols: usize) -> (Vec<f32>, Vec<f32>) {
    let block = SUM_BLOCK * cols;
    let partial: Vec<(Vec<f32>, Vec<f32>)> = g
        .par_chunks(block)
        .zip(xhat.par_chunks(block))
        .map(|(gb, xb)| {
            let mut sg = vec![0.0f32; cols];
            let mut sgx = vec![0.0f32; cols];
            for (gr, xr) in gb.chunks_exact(cols).zip(xb.chunks_exact(cols)) {
                rows::add_product_assign(&mut sgx, &mut sg, gr, xr);
            }
            (sgx, sg)
        })
        .collect();
    let (mut sgx, mut sg) = (vec![0.0f32; cols], vec![0.0f32; cols]);
    for (a, b) in &partial {
        rows::add_assign(&mut sgx, a);
        rows::add_assign(&mut sg, b);
    }
    (sgx, sg)
}

/// LayerNorm of each row of `x`: writes `xhat`, `rstd` and `gamma * xhat + beta`.
fn layer_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    xhat: &mut [f32],
    rstd: &mut [f32],
    out: &mut [f32],
) {
    let d = gamma.len();
    xhat.par_chunks_mut(d)
        .zip(out.par_chunks_mut(d))
        .zip(rstd.par_iter_mut())
        .zip(x.par_chunks(d))
        .with_min_len(ROW_TASK)
        .for_each(|(((xh, o), r), xr)| *r = rows::layer_norm_row(xr, gamma, beta, eps, xh, o));
}

/// LayerNorm backward for each row: adds `dx` to `acc` given the output gradient `g`.
fn layer_norm_backward(g: &[f32], gamma: &[f32], xhat: &[f32], rstd: &[f32], acc: &mut [f32]) {
    let d = gamma.len();
    acc.par_chunks_mut(d)
        .zip(g.par_chunks(d))
        .zip(xhat.par_chunks(d))
        .zip(rstd.par_iter())
        .with_min_len(ROW_TASK)
        .for_each(|(((a, gr), xr), &rs)| rows::layer_norm_backward_row(gr, gamma, xr, rs, a));
}

/// The forward pass. Returns the layer output `[N, d]`, and what the backward pass needs when
/// `save` is set.
///
/// # Panics
/// When a slice's length does not match `dims` (the caller checks shapes first).
pub fn forward(
    dims: LayerDims,
    w: &LayerWeights<'_>,
    extras: &LayerExtras<'_>,
    x: &[f32],
    save: bool,
) -> (Vec<f32>, Option<Saved>) {
    let (n, d, f, h, hd) = (
        dims.tokens(),
        dims.d_model,
        dims.d_ffn,
        dims.heads,
        dims.head_dim(),
    );
    assert_eq!(x.len(), n * d, "input size");
    let mut xhat1 = vec![0.0f32; n * d];
    let mut rstd1 = vec![0.0f32; n];
    let mut a = vec![0.0f32; n * d];
    layer_norm(
        x,
        w.ln1_gamma,
        w.ln1_beta,
        dims.eps,
        &mut xhat1,
        &mut rstd1,
        &mut a,
    );

    // Projections, then bias, rotary and the query scale in one pass.
    let (wqkv, bqkv) = w.packed_qkv(d);
    let mut qkv = product(View::of(&a, n, d), View::of(&wqkv, d, 3 * d));
    let scale = dims.query_scale();
    qkv.par_chunks_mut(3 * d)
        .enumerate()
        .with_min_len(ROW_TASK)
        .for_each(|(t, row)| rows::qkv_row(row, &bqkv, extras.rotary_at(t, hd), hd, scale));

    let mut lse = vec![0.0f32; dims.rows * h * dims.len];
    let mut attn = vec![0.0f32; n * d];
    attention_forward(dims, &qkv, extras.key_bias, &mut attn, &mut lse);

    // Output projection, dropout and the residual.
    let mut x1 = product(View::of(&attn, n, d), View::of(w.wo, d, d));
    residual(&mut x1, x, w.bo, extras.dropout.map(|m| m.0), d);

    let mut xhat2 = vec![0.0f32; n * d];
    let mut rstd2 = vec![0.0f32; n];
    let mut c = vec![0.0f32; n * d];
    layer_norm(
        &x1,
        w.ln2_gamma,
        w.ln2_beta,
        dims.eps,
        &mut xhat2,
        &mut rstd2,
        &mut c,
    );

    let mut up = product(View::of(&c, n, d), View::of(w.w_up, d, f));
    let mut act = vec![0.0f32; n * f];
    up.par_chunks_mut(f)
        .zip(act.par_chunks_mut(f))
        .with_min_len(ROW_TASK)
        .for_each(|(u, g)| rows::bias_gelu_row(u, w.b_up, g));

    let mut out = product(View::of(&act, n, f), View::of(w.w_down, f, d));
    residual(&mut out, &x1, w.b_down, extras.dropout.map(|m| m.1), d);

    let saved = save.then_some(Saved {
        xhat1,
        rstd1,
        a,
        wqkv,
        qkv,
        lse,
        attn,
        xhat2,
        rstd2,
        c,
        up,
        act,
    });
    (out, saved)
}

/// `branch = skip + mask * (branch + bias)`, row by row.
fn residual(branch: &mut [f32], skip: &[f32], bias: &[f32], mask: Option<&[f32]>, d: usize) {
    branch
        .par_chunks_mut(d)
        .zip(skip.par_chunks(d))
        .enumerate()
        .with_min_len(ROW_TASK)
        .for_each(|(t, (y, s))| {
            rows::residual_row(y, s, bias, mask.map(|m| &m[t * d..(t + 1) * d]))
        });
}

/// Softmax of each row of `scores` (`[rows, keys]`) in place after adding `key_bias`; writes
/// each row's log-sum-exp.
fn softmax_rows(scores: &mut [f32], keys: usize, key_bias: Option<&[f32]>, lse: &mut [f32]) {
    for (row, l) in scores.chunks_exact_mut(keys).zip(lse.iter_mut()) {
        *l = rows::softmax_row(row, key_bias);
    }
}

/// softmax(q kᵀ + bias) v for every sequence and head, a chunk of queries at a time.
fn attention_forward(
    dims: LayerDims,
    qkv: &[f32],
    key_bias: Option<&[f32]>,
    attn: &mut [f32],
    lse: &mut [f32],
) {
    let (l, d, h, hd) = (dims.len, dims.d_model, dims.heads, dims.head_dim());
    let chunk = dims.chunk();
    let out = SharedMut(attn.as_mut_ptr());
    lse.par_chunks_mut(l).enumerate().for_each(|(bh, lse)| {
        let (b, head) = (bh / h, bh % h);
        let bias = key_bias.map(|kb| &kb[b * l..(b + 1) * l]);
        let k = View::block(qkv, 3 * d, b * l, l, d + head * hd, hd);
        let v = View::block(qkv, 3 * d, b * l, l, 2 * d + head * hd, hd);
        let mut scores = vec![0.0f32; chunk * l];
        for i0 in (0..l).step_by(chunk) {
            let rows = chunk.min(l - i0);
            let s = &mut scores[..rows * l];
            let q = View::block(qkv, 3 * d, b * l + i0, rows, head * hd, hd);
            matmul_local(s, q, k.t());
            softmax_rows(s, l, bias, &mut lse[i0..i0 + rows]);
            // SAFETY: task (b, head) alone writes rows b*l+i0.. of columns head*hd.. of
            // `attn`, which is n x d; the block is in bounds.
            unsafe {
                gemm_raw(
                    out.at((b * l + i0) * d + head * hd),
                    d,
                    View::of(s, rows, l),
                    v,
                    false,
                    Parallelism::None,
                )
            }
        }
    });
}

/// `dst = a b` on the calling thread only (inside a parallel task).
fn matmul_local(dst: &mut [f32], a: View, b: View) {
    assert_eq!(dst.len(), a.rows * b.cols, "destination size");
    // SAFETY: `dst` is exclusively borrowed and exactly the block's size.
    unsafe { gemm_raw(dst.as_mut_ptr(), b.cols, a, b, false, Parallelism::None) }
}

/// The backward pass: the gradients of the input and of every parameter, given the output's.
/// The weight matrices' gradients (the four projections, the two feed-forward weights) are
/// computed only where `needed` says (indexed as [`LayerGrads::params`]) and left empty
/// otherwise: a frozen weight (LoRA, frozen layers) skips its `N x d x d_out` product, about a
/// third of a weight's backward work.
pub fn backward(
    dims: LayerDims,
    w: &LayerWeights<'_>,
    extras: &LayerExtras<'_>,
    saved: &Saved,
    grad_out: &[f32],
    needed: &[bool; 16],
) -> LayerGrads {
    let (n, d, f, hd) = (dims.tokens(), dims.d_model, dims.d_ffn, dims.head_dim());
    assert_eq!(grad_out.len(), n * d, "output gradient size");
    let masked = |g: &[f32], mask: Option<&[f32]>| -> Vec<f32> {
        match mask {
            Some(m) => {
                let mut out = g.to_vec();
                out.par_chunks_mut(d)
                    .zip(m.par_chunks(d))
                    .with_min_len(ROW_TASK)
                    .for_each(|(o, m)| rows::mul_assign(o, m));
                out
            }
            None => g.to_vec(),
        }
    };

    // Feed-forward branch.
    let dz = masked(grad_out, extras.dropout.map(|m| m.1));
    let db_down = column_sums(&dz, d);
    let weight_grad = |i: usize, a: View, b: View| {
        if needed[i] {
            product(a, b)
        } else {
            Vec::new()
        }
    };
    let dw_down = weight_grad(14, View::of(&saved.act, n, f).t(), View::of(&dz, n, d));
    let mut du = product(View::of(&dz, n, d), View::of(w.w_down, f, d).t());
    drop(dz);
    du.par_chunks_mut(f)
        .zip(saved.up.par_chunks(f))
        .with_min_len(ROW_TASK)
        .for_each(|(g, u)| rows::gelu_backward_row(g, u));
    let db_up = column_sums(&du, f);
    let dw_up = weight_grad(12, View::of(&saved.c, n, d).t(), View::of(&du, n, f));
    let dc = product(View::of(&du, n, f), View::of(w.w_up, d, f).t());
    drop(du);
    let (dgamma2, dbeta2) = column_dot_sums(&dc, &saved.xhat2, d);
    let dgamma2: Vec<f32> = dgamma2;
    // dx1 = grad_out (residual) + LayerNorm 2's input gradient.
    let mut dx1 = grad_out.to_vec();
    layer_norm_backward(&dc, w.ln2_gamma, &saved.xhat2, &saved.rstd2, &mut dx1);
    drop(dc);

    // Attention branch.
    let dy = masked(&dx1, extras.dropout.map(|m| m.0));
    let dbo = column_sums(&dy, d);
    let dwo = weight_grad(8, View::of(&saved.attn, n, d).t(), View::of(&dy, n, d));
    let dattn = product(View::of(&dy, n, d), View::of(w.wo, d, d).t());
    drop(dy);

    let mut dqkv = vec![0.0f32; n * 3 * d];
    attention_backward(dims, saved, extras.key_bias, &dattn, &mut dqkv);
    drop(dattn);
    // Undo the query scale and the rotary embedding.
    let scale = dims.query_scale();
    dqkv.par_chunks_mut(3 * d)
        .enumerate()
        .with_min_len(ROW_TASK)
        .for_each(|(t, row)| rows::qkv_backward_row(row, extras.rotary_at(t, hd), hd, scale));
    let dbqkv = column_sums(&dqkv, 3 * d);
    let dwqkv = if needed[2] || needed[4] || needed[6] {
        product(View::of(&saved.a, n, d).t(), View::of(&dqkv, n, 3 * d))
    } else {
        Vec::new()
    };
    let da = product(
        View::of(&dqkv, n, 3 * d),
        View::of(&saved.wqkv, d, 3 * d).t(),
    );
    drop(dqkv);
    let (dgamma1, dbeta1) = column_dot_sums(&da, &saved.xhat1, d);
    layer_norm_backward(&da, w.ln1_gamma, &saved.xhat1, &saved.rstd1, &mut dx1);

    // Unpack [d, 3d] and [3d] into the three projections.
    let mut dw = [Vec::new(), Vec::new(), Vec::new()];
    for row in dwqkv.chunks_exact(3 * d) {
        for (m, part) in dw.iter_mut().zip(row.chunks_exact(d)) {
            m.extend_from_slice(part);
        }
    }
    let [dwq, dwk, dwv] = dw;
    LayerGrads {
        input: dx1,
        params: [
            dgamma1,
            dbeta1,
            dwq,
            dbqkv[..d].to_vec(),
            dwk,
            dbqkv[d..2 * d].to_vec(),
            dwv,
            dbqkv[2 * d..].to_vec(),
            dwo,
            dbo,
            dgamma2,
            dbeta2,
            dw_up,
            db_up,
            dw_down,
            db_down,
        ],
    }
}

/// Gradients of the queries (scaled, rotated), keys (rotated) and values from the attention
/// output's gradient, recomputing the probabilities a chunk of queries at a time from the saved
/// log-sum-exp (flash-attention backward).
fn attention_backward(
    dims: LayerDims,
    saved: &Saved,
    key_bias: Option<&[f32]>,
    dattn: &[f32],
    dqkv: &mut [f32],
) {
    let (l, d, h, hd) = (dims.len, dims.d_model, dims.heads, dims.head_dim());
    let chunk = dims.chunk();
    let qkv = &saved.qkv;
    let out = SharedMut(dqkv.as_mut_ptr());
    (0..dims.rows * h).into_par_iter().for_each(|bh| {
        let (b, head) = (bh / h, bh % h);
        let bias = key_bias.map(|kb| &kb[b * l..(b + 1) * l]);
        let lse = &saved.lse[bh * l..(bh + 1) * l];
        let k = View::block(qkv, 3 * d, b * l, l, d + head * hd, hd);
        let v = View::block(qkv, 3 * d, b * l, l, 2 * d + head * hd, hd);
        // delta_i = sum_j dO_ij O_ij (= sum_j P_ij dP_ij).
        let delta: Vec<f32> = (0..l)
            .map(|i| {
                let at = (b * l + i) * d + head * hd;
                rows::dot(&dattn[at..at + hd], &saved.attn[at..at + hd])
            })
            .collect();
        let mut p = vec![0.0f32; chunk * l];
        let mut dp = vec![0.0f32; chunk * l];
        for i0 in (0..l).step_by(chunk) {
            let rows = chunk.min(l - i0);
            let (p, dp) = (&mut p[..rows * l], &mut dp[..rows * l]);
            let q = View::block(qkv, 3 * d, b * l + i0, rows, head * hd, hd);
            let dout = View::block(dattn, d, b * l + i0, rows, head * hd, hd);
            matmul_local(p, q, k.t());
            for (i, row) in p.chunks_exact_mut(l).enumerate() {
                rows::probabilities_row(row, bias, lse[i0 + i]);
            }
            matmul_local(dp, dout, v.t());
            // SAFETY (all three writes): task (b, head) alone writes rows b*l.. of its own
            // columns of `dqkv` (n x 3d): dV at 2d + head*hd, dQ at head*hd, dK at d + head*hd.
            unsafe {
                gemm_raw(
                    out.at(b * l * 3 * d + 2 * d + head * hd),
                    3 * d,
                    View::of(p, rows, l).t(),
                    dout,
                    i0 > 0,
                    Parallelism::None,
                );
            }
            for (i, (dpr, pr)) in dp.chunks_exact_mut(l).zip(p.chunks_exact(l)).enumerate() {
                rows::softmax_backward_row(dpr, pr, delta[i0 + i]);
            }
            unsafe {
                gemm_raw(
                    out.at((b * l + i0) * 3 * d + head * hd),
                    3 * d,
                    View::of(dp, rows, l),
                    k,
                    false,
                    Parallelism::None,
                );
                gemm_raw(
                    out.at(b * l * 3 * d + d + head * hd),
                    3 * d,
                    View::of(dp, rows, l).t(),
                    q,
                    i0 > 0,
                    Parallelism::None,
                );
            }
        }
    });
}
