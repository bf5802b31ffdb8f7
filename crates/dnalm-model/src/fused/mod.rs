//! The encoder layer as one operation with a hand-written backward pass, on burn Flex (CPU).
//!
//! [`kernels`] holds the arithmetic; this module registers it with burn as a backend extension
//! (`EncoderLayerOps`) for Flex and for `Autodiff<Flex>`, so that a training step records one
//! autodiff node per layer instead of dozens, and `encoder_layer` calls it on ordinary tensors.
//! [`crate::block::Block`] takes this path for pre-LayerNorm encoder layers with padding-only
//! (bidirectional) attention on the CPU, and its reference path everywhere else (decoder, ALiBi,
//! explicit masks, the BERT layout, GPU backends); the two agree to float rounding (tests below).
//!
//! A model takes this path unless built with [`crate::DnaLm::with_fused_layers`]`(false)` (a
//! per-model choice, not a process-wide switch, so both paths can run side by side).

pub mod gelu;
pub mod hyena;
pub mod kernels;
mod rows;
pub mod scan;

use std::sync::Arc;

use burn::{
    backend::{
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
            Autodiff, NodeId,
        },
        backend_extension,
        flex::FlexTensor,
        tensor::FloatTensor,
        Backend, Dispatch, DispatchDevice, ExtensionType, Flex, TensorMetadata,
    },
    tensor::{DType, Device, Tensor, TensorData},
};

pub use kernels::LayerDims;
use kernels::{LayerExtras, LayerWeights, Saved};

/// Whether `device` runs the fused layer (Flex, with or without autodiff).
pub fn supports(device: &Device) -> bool {
    fn flex(device: &DispatchDevice) -> bool {
        match device {
            DispatchDevice::Flex(_) => true,
            DispatchDevice::Autodiff(inner) => flex(&inner.clone().inner()),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
    flex(device.as_dispatch())
}

/// The 16 parameters of one layer, in [`kernels::LayerWeights`] order.
#[derive(ExtensionType)]
#[allow(missing_docs)]
pub struct LayerParams<B: Backend> {
    pub ln1_gamma: FloatTensor<B>,
    pub ln1_beta: FloatTensor<B>,
    pub wq: FloatTensor<B>,
    pub bq: FloatTensor<B>,
    pub wk: FloatTensor<B>,
    pub bk: FloatTensor<B>,
    pub wv: FloatTensor<B>,
    pub bv: FloatTensor<B>,
    pub wo: FloatTensor<B>,
    pub bo: FloatTensor<B>,
    pub ln2_gamma: FloatTensor<B>,
    pub ln2_beta: FloatTensor<B>,
    pub w_up: FloatTensor<B>,
    pub b_up: FloatTensor<B>,
    pub w_down: FloatTensor<B>,
    pub b_down: FloatTensor<B>,
}

impl<B: Backend> LayerParams<B> {
    fn into_array(self) -> [FloatTensor<B>; 16] {
        [
            self.ln1_gamma,
            self.ln1_beta,
            self.wq,
            self.bq,
            self.wk,
            self.bk,
            self.wv,
            self.bv,
            self.wo,
            self.bo,
            self.ln2_gamma,
            self.ln2_beta,
            self.w_up,
            self.b_up,
            self.w_down,
            self.b_down,
        ]
    }
}

/// A tensor input that a call may leave out.
#[derive(ExtensionType)]
pub enum OptionalTensor<B: Backend> {
    /// The tensor.
    Given(FloatTensor<B>),
    /// Left out.
    Absent,
}

impl<B: Backend> OptionalTensor<B> {
    fn into_option(self) -> Option<FloatTensor<B>> {
        match self {
            OptionalTensor::Given(t) => Some(t),
            OptionalTensor::Absent => None,
        }
    }
}

impl<B: Backend> From<Option<FloatTensor<B>>> for OptionalTensor<B> {
    fn from(t: Option<FloatTensor<B>>) -> Self {
        t.map_or(OptionalTensor::Absent, OptionalTensor::Given)
    }
}

/// The layer's inputs that no gradient flows to: rotary tables (`[N, head_dim]`), the additive
/// key bias (`[rows, len]`) and the two dropout masks (`[rows, len, d]`).
#[derive(ExtensionType)]
#[allow(missing_docs)]
pub struct LayerConstants<B: Backend> {
    #[extension_type]
    pub cos: OptionalTensor<B>,
    #[extension_type]
    pub sin: OptionalTensor<B>,
    #[extension_type]
    pub key_bias: OptionalTensor<B>,
    #[extension_type]
    pub dropout_attn: OptionalTensor<B>,
    #[extension_type]
    pub dropout_ffn: OptionalTensor<B>,
}

/// The fused encoder layer as a burn backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait EncoderLayerOps: Backend {
    /// One pre-LayerNorm encoder layer, `x + attn(ln1(x))` then `+ ffn(ln2(.))`, on `[rows, len, d]`.
    fn fused_encoder_layer(
        x: FloatTensor<Self>,
        #[extension_type] params: LayerParams<Self>,
        #[extension_type] constants: LayerConstants<Self>,
        dims: LayerDims,
    ) -> FloatTensor<Self>;
}

/// The inputs of one layer besides its parameters.
pub(crate) struct LayerInputs {
    /// Rotary `cos` and `sin`, `[rows * len, head_dim]` each.
    pub rotary: Option<(Tensor<2>, Tensor<2>)>,
    /// Additive key bias `[rows, len]`.
    pub key_bias: Option<Tensor<2>>,
    /// Dropout masks of the two residual branches, `[rows, len, d]` each.
    pub dropout: Option<(Tensor<3>, Tensor<3>)>,
}

/// Runs one pre-LayerNorm encoder layer, `x + attn(ln1(x))` then `+ ffn(ln2(.))`, as a single
/// operation (differentiable when `x` or the parameters track gradients).
///
/// # Shapes
/// - `x`: `[rows, len, d_model]`, on a device where [`supports`] holds, f32
/// - `weights`: `[d, d]` projections, `[d, f]` / `[f, d]` feed-forward, `[.]` vectors
/// - output: `[rows, len, d_model]`
pub(crate) fn encoder_layer(
    x: Tensor<3>,
    weights: [Tensor<2>; 6],
    vectors: [Tensor<1>; 10],
    inputs: LayerInputs,
    dims: LayerDims,
) -> Tensor<3> {
    let [wq, wk, wv, wo, w_up, w_down] = weights;
    let [ln1_gamma, ln1_beta, bq, bk, bv, bo, ln2_gamma, ln2_beta, b_up, b_down] = vectors;
    let params = LayerParams {
        ln1_gamma: ln1_gamma.into_dispatch(),
        ln1_beta: ln1_beta.into_dispatch(),
        wq: wq.into_dispatch(),
        bq: bq.into_dispatch(),
        wk: wk.into_dispatch(),
        bk: bk.into_dispatch(),
        wv: wv.into_dispatch(),
        bv: bv.into_dispatch(),
        wo: wo.into_dispatch(),
        bo: bo.into_dispatch(),
        ln2_gamma: ln2_gamma.into_dispatch(),
        ln2_beta: ln2_beta.into_dispatch(),
        w_up: w_up.into_dispatch(),
        b_up: b_up.into_dispatch(),
        w_down: w_down.into_dispatch(),
        b_down: b_down.into_dispatch(),
    };
    let (cos, sin) = inputs.rotary.unzip();
    let (dropout_attn, dropout_ffn) = inputs.dropout.unzip();
    let constants = LayerConstants {
        cos: cos.map(Tensor::into_dispatch).into(),
        sin: sin.map(Tensor::into_dispatch).into(),
        key_bias: inputs.key_bias.map(Tensor::into_dispatch).into(),
        dropout_attn: dropout_attn.map(Tensor::into_dispatch).into(),
        dropout_ffn: dropout_ffn.map(Tensor::into_dispatch).into(),
    };
    Tensor::from_dispatch(<Dispatch as EncoderLayerOps>::fused_encoder_layer(
        x.into_dispatch(),
        params,
        constants,
        dims,
    ))
}

/// A Flex tensor's f32 values, borrowed when contiguous.
fn host(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    assert_eq!(t.dtype(), DType::F32, "the fused encoder layer runs in f32");
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("contiguous f32")
                .to_vec(),
        ),
    }
}

fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Registers each tracked parent's gradient (host values, shaped as the matching input): the
/// end of every fused operation's backward pass.
pub(crate) fn register_gradients<const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [Vec<f32>; N],
    inputs: &[FlexTensor],
) {
    for ((id, grad), input) in parents.into_iter().zip(values).zip(inputs) {
        if let Some(id) = id {
            grads.register::<Flex>(id, flex_tensor(grad, input.shape().to_vec()));
        }
    }
}

/// The host copies (or views) of one call's tensors, and what the kernels take.
struct HostCall<'a> {
    params: Vec<std::borrow::Cow<'a, [f32]>>,
    rotary: Vec<std::borrow::Cow<'a, [f32]>>,
    key_bias: Option<std::borrow::Cow<'a, [f32]>>,
    dropout: Vec<std::borrow::Cow<'a, [f32]>>,
}

/// [`LayerConstants`] on the host side.
#[derive(Debug, Clone)]
struct HostConstants {
    rotary: Vec<FlexTensor>,
    key_bias: Option<FlexTensor>,
    dropout: Vec<FlexTensor>,
}

impl HostConstants {
    fn new(c: LayerConstants<Flex>) -> Self {
        Self::from_options(
            [c.cos, c.sin, c.key_bias, c.dropout_attn, c.dropout_ffn]
                .map(OptionalTensor::into_option),
        )
    }

    fn from_options([cos, sin, key_bias, attn, ffn]: [Option<FlexTensor>; 5]) -> Self {
        HostConstants {
            rotary: cos.into_iter().chain(sin).collect(),
            key_bias,
            dropout: attn.into_iter().chain(ffn).collect(),
        }
    }
}

impl<'a> HostCall<'a> {
    fn new(params: &'a [FlexTensor], constants: &'a HostConstants) -> Self {
        assert_eq!(params.len(), 16, "16 layer parameters");
        HostCall {
            params: params.iter().map(host).collect(),
            rotary: constants.rotary.iter().map(host).collect(),
            key_bias: constants.key_bias.as_ref().map(host),
            dropout: constants.dropout.iter().map(host).collect(),
        }
    }

    fn weights(&self) -> LayerWeights<'_> {
        LayerWeights::from_slices(std::array::from_fn(|i| &*self.params[i]))
    }

    fn extras(&self) -> LayerExtras<'_> {
        LayerExtras {
            rotary: match self.rotary.as_slice() {
                [c, s] => Some((&**c, &**s)),
                _ => None,
            },
            key_bias: self.key_bias.as_deref(),
            dropout: match self.dropout.as_slice() {
                [a, f] => Some((&**a, &**f)),
                _ => None,
            },
        }
    }
}

fn run_forward(
    x: &FlexTensor,
    params: &[FlexTensor],
    constants: &HostConstants,
    dims: LayerDims,
    save: bool,
) -> (FlexTensor, Option<Saved>) {
    let call = HostCall::new(params, constants);
    let (out, saved) = kernels::forward(dims, &call.weights(), &call.extras(), &host(x), save);
    (flex_tensor(out, x.shape().to_vec()), saved)
}

impl EncoderLayerOps for Flex {
    fn fused_encoder_layer(
        x: FlexTensor,
        params: LayerParams<Self>,
        constants: LayerConstants<Self>,
        dims: LayerDims,
    ) -> FlexTensor {
        let params = params.into_array();
        run_forward(&x, &params, &HostConstants::new(constants), dims, false).0
    }
}

/// The autodiff node of one fused layer: 17 parents (the input, then the 16 parameters).
#[derive(Debug)]
struct EncoderLayerBackward;

/// What the node keeps for its backward pass.
#[derive(Debug, Clone)]
struct LayerState {
    saved: Arc<Saved>,
    params: Arc<Vec<FlexTensor>>,
    constants: Arc<HostConstants>,
    dims: LayerDims,
    shapes: Arc<Vec<Vec<usize>>>,
}

impl Backward<Flex, 17> for EncoderLayerBackward {
    type State = LayerState;

    fn backward(self, ops: Ops<Self::State, 17>, grads: &mut Gradients, _: &mut Checkpointer) {
        let state = ops.state;
        let grad_out = grads.consume::<Flex>(&ops.node);
        let call = HostCall::new(&state.params, &state.constants);
        let [input_node, param_nodes @ ..] = ops.parents;
        let needed = std::array::from_fn(|i| param_nodes[i].is_some());
        let g = kernels::backward(
            state.dims,
            &call.weights(),
            &call.extras(),
            &state.saved,
            &host(&grad_out),
            &needed,
        );
        if let Some(node) = input_node {
            grads.register::<Flex>(node.id, flex_tensor(g.input, grad_out.shape().to_vec()));
        }
        for ((node, grad), shape) in param_nodes
            .into_iter()
            .zip(g.params)
            .zip(state.shapes.iter())
        {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(grad, shape.clone()));
            }
        }
    }
}

impl<C: CheckpointStrategy> EncoderLayerOps for Autodiff<Flex, C> {
    fn fused_encoder_layer(
        x: FloatTensor<Self>,
        params: LayerParams<Self>,
        constants: LayerConstants<Self>,
        dims: LayerDims,
    ) -> FloatTensor<Self> {
        let params = params.into_array();
        let nodes = std::array::from_fn(|i| {
            if i == 0 {
                x.node()
            } else {
                params[i - 1].node()
            }
        });
        // Masks, tables and biases are constants of the layer: no gradient flows to them.
        let constants = HostConstants::from_options(
            [
                constants.cos,
                constants.sin,
                constants.key_bias,
                constants.dropout_attn,
                constants.dropout_ffn,
            ]
            .map(|t| t.into_option().map(|t| t.into_primitive())),
        );
        let params: Vec<FlexTensor> = params.into_iter().map(|t| t.into_primitive()).collect();
        let x = x.into_primitive();
        match EncoderLayerBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, saved) = run_forward(&x, &params, &constants, dims, true);
                let shapes = params.iter().map(|p| p.shape().to_vec()).collect();
                let state = LayerState {
                    saved: Arc::new(saved.expect("saved when asked")),
                    params: Arc::new(params),
                    constants: Arc::new(constants),
                    dims,
                    shapes: Arc::new(shapes),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => {
                let (out, _) = run_forward(&x, &params, &constants, dims, false);
                prep.finish(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::{
        module::Module,
        tensor::{Int, Tensor, TensorData},
    };

    use crate::{
        attention::{AttentionBias, RotaryTables},
        block::{Block, BlockContext, DropoutStream, FeedForward},
        Architecture, AttentionMask, AttentionPattern, ModelConfig,
    };

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// A block whose every parameter (LayerNorm scales and biases included) is drawn from
    /// `seed`, so that no gradient is hidden behind a 1 or a 0.
    fn random_block(cfg: &ModelConfig, device: &burn::tensor::Device, seed: u32) -> Block {
        let block = Block::new(cfg, device);
        let values: std::collections::BTreeMap<_, _> = crate::tensors::parameter_shapes(&block)
            .into_iter()
            .enumerate()
            .map(|(i, (name, shape))| {
                let n = shape.iter().product();
                let v = values(n, seed + 100 * i as u32)
                    .into_iter()
                    .map(|v| 0.3 * v)
                    .collect();
                (name, crate::tensors::HostTensor { shape, values: v })
            })
            .collect();
        crate::io::load_parameters(block, &values, std::path::Path::new("test")).expect("shapes")
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    struct Case {
        rotary: bool,
        padding: bool,
        dropout: bool,
        /// Freeze the query, output and feed-forward down projections (as LoRA and frozen
        /// layers do): the fused backward skips their weight gradients.
        frozen: bool,
    }

    /// The fused layer and the reference path agree on outputs and on the gradients of the
    /// input and of all 16 parameters, with rotary positions, padding and dropout on or off;
    /// frozen parameters get a gradient from neither.
    fn check(case: Case) {
        let device = crate::cpu().autodiff();
        let (rows, len) = (3, 37);
        let mut cfg = ModelConfig::new(Architecture::Encoder, 12);
        cfg.d_model = 32;
        cfg.n_heads = 4;
        cfg.d_ffn = 48;
        cfg.max_positions = 64;
        cfg.dropout = if case.dropout { 0.2 } else { 0.0 };
        // Several query chunks per head, the last one short.
        cfg.attention_chunk = 8;
        let mut block = random_block(&cfg, &device, 7);
        if case.frozen {
            block.query = block.query.map(Module::no_grad);
            block.output = block.output.map(Module::no_grad);
            // The down projection but not the up one: a mask indexed wrongly shows.
            if let Some(FeedForward::Gelu(ffn)) = &mut block.ffn {
                ffn.down = ffn.down.clone().no_grad();
            }
        }
        let d = cfg.d_model;
        let x0 = Tensor::<3>::from_data(
            TensorData::new(values(rows * len * d, 1), [rows, len, d]),
            &device,
        );
        let weight = Tensor::<3>::from_data(
            TensorData::new(values(rows * len * d, 2), [rows, len, d]),
            &device,
        );
        let padding = case.padding.then(|| {
            let mut real = vec![true; rows * len];
            for i in (len - 5..len).chain(2 * len - 1..2 * len) {
                real[i] = false;
            }
            real
        });
        let mask = AttentionMask {
            padding,
            pattern: AttentionPattern::Bidirectional,
        };
        let ctx = || {
            let rotary = case.rotary.then(|| {
                let positions: Vec<i64> = (0..rows)
                    .flat_map(|r| (0..len).map(move |i| (i + 3 * r) as i64))
                    .collect();
                RotaryTables::new(64, d / cfg.n_heads, 10_000.0, &device).select(
                    Tensor::<2, Int>::from_data(TensorData::new(positions, [rows, len]), &device),
                )
            });
            BlockContext {
                bias: AttentionBias::new(&mask, rows, len, None, &device),
                keep: None,
                rotary,
                fused: true,
                dropout: case.dropout.then(|| DropoutStream {
                    seed: 11,
                    calls: std::cell::Cell::new(0),
                }),
            }
        };
        let run = |fused: bool| {
            let x = x0.clone().require_grad();
            let (c, b) = (ctx(), block.clone());
            let out = if fused {
                let parts = b.fused_parts(&x, &c).expect("fusable");
                b.forward_fused(x.clone(), &c, parts)
            } else {
                b.forward_reference(x.clone(), &c)
            };
            let grads = (out.clone() * weight.clone()).sum().backward();
            let mut g: Vec<Option<Tensor<1>>> = vec![x.grad(&grads).map(|g| g.flatten(0, 2))];
            let parts = b.fused_parts(&x, &c).expect("fusable");
            g.extend(
                parts
                    .weights
                    .iter()
                    .map(|w| w.grad(&grads).map(|g| g.flatten(0, 1))),
            );
            g.extend(parts.vectors.iter().map(|v| v.grad(&grads)));
            (out.inner(), g)
        };
        let (out_f, grads_f) = run(true);
        let (out_r, grads_r) = run(false);
        let diff = max_diff(out_f, out_r);
        assert!(diff < 1e-4, "output differs by {diff}");
        let mut frozen = 0;
        for (i, pair) in grads_f.into_iter().zip(grads_r).enumerate() {
            match pair {
                (Some(gf), Some(gr)) => {
                    let scale = gr.clone().abs().max().into_scalar::<f32>().max(1e-3);
                    let diff = max_diff(gf, gr) / scale;
                    assert!(diff < 1e-3, "gradient {i} differs by {diff} (relative)");
                }
                (None, None) => frozen += 1,
                (f, r) => panic!(
                    "gradient {i}: fused has one: {}, reference has one: {}",
                    f.is_some(),
                    r.is_some()
                ),
            }
        }
        // Weights and biases of the query, output and down projections.
        assert_eq!(frozen, if case.frozen { 6 } else { 0 });
    }

    #[test]
    fn fused_layer_matches_reference_with_rotary_and_padding() {
        check(Case {
            rotary: true,
            padding: true,
            dropout: false,
            frozen: false,
        });
    }

    #[test]
    fn fused_layer_matches_reference_without_rotary_or_padding() {
        check(Case {
            rotary: false,
            padding: false,
            dropout: false,
            frozen: false,
        });
    }

    /// The frozen-weight mask of the fused backward: the trainable parameters' gradients (and
    /// the input's) still match the reference, and the frozen ones get none.
    #[test]
    fn fused_layer_matches_reference_with_frozen_weights() {
        check(Case {
            rotary: true,
            padding: true,
            dropout: false,
            frozen: true,
        });
    }

    #[test]
    fn fused_layer_matches_reference_with_dropout() {
        check(Case {
            rotary: true,
            padding: true,
            dropout: true,
            frozen: false,
        });
    }

    #[test]
    fn fused_layer_runs_without_autodiff() {
        let device = crate::cpu();
        let mut cfg = ModelConfig::new(Architecture::Encoder, 12);
        cfg.d_model = 16;
        cfg.n_heads = 2;
        cfg.d_ffn = 32;
        let block = random_block(&cfg, &device, 3);
        let x = Tensor::<3>::from_data(TensorData::new(values(2 * 9 * 16, 5), [2, 9, 16]), &device);
        let mask = AttentionMask {
            padding: None,
            pattern: AttentionPattern::Bidirectional,
        };
        let ctx = BlockContext {
            bias: AttentionBias::new(&mask, 2, 9, None, &device),
            keep: None,
            rotary: None,
            fused: true,
            dropout: None,
        };
        let parts = block.fused_parts(&x, &ctx).expect("fusable on Flex");
        let fused = block.forward_fused(x.clone(), &ctx, parts);
        let reference = block.forward_reference(x, &ctx);
        let diff = max_diff(fused, reference);
        assert!(diff < 1e-4, "{diff}");
    }
}
