//! GELU's tanh approximation as one operation with a hand-written backward pass, on burn Flex
//! (CPU): the activation of HyenaDNA's MLP ([`crate::block::gelu_tanh`]).
//!
//! As burn operations it is six element-wise operations on the `d_ffn`-wide hidden layer (a
//! cube, two scalings, a sum, a sigmoid with libm's `expf` per element, a product), each a
//! fresh tensor that autodiff keeps: about 20 KB per token per block at `d_ffn = 1024`, and
//! `expf` alone was 7.5% of a Hyena training step (`perf`, 8 k tokens). Here the forward pass
//! keeps only its input, and both passes are one vectorised loop with [`fast_exp`].

// `multiversion!` calls `#[target_feature]` functions behind run-time feature checks.
#![allow(unsafe_code)]

use burn::{
    backend::{
        autodiff::{
            checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
            grads::Gradients,
            ops::{Backward, Ops, OpsKind},
            Autodiff,
        },
        backend_extension,
        flex::FlexTensor,
        tensor::FloatTensor,
        Backend, Dispatch, Flex, TensorMetadata,
    },
    tensor::Tensor,
};
use rayon::prelude::*;

use super::rows::{fast_exp, multiversion};
use super::{flex_tensor, host, register_gradients};

/// `2 sqrt(2 / pi)`: `tanh(z) = 2 sigmoid(2z) - 1`, so `x/2 (1 + tanh(z)) = x sigmoid(2z)`.
const TWO_SQRT_2_OVER_PI: f32 = 1.595_769_2;
const CUBIC: f32 = 0.044_715;
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

multiversion! {
    /// `out = x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))`.
    fn forward_row(x: &[f32], out: &mut [f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            let a = TWO_SQRT_2_OVER_PI * (x + CUBIC * x * x * x);
            *o = x / (1.0 + fast_exp(-a));
        }
    }
}

multiversion! {
    /// `out = g d/dx [x sigmoid(a(x))] = g (s + x s (1 - s) a'(x))`.
    fn backward_row(x: &[f32], g: &[f32], out: &mut [f32]) {
        for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
            let a = TWO_SQRT_2_OVER_PI * (x + CUBIC * x * x * x);
            let s = 1.0 / (1.0 + fast_exp(-a));
            let da = TWO_SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * x * x);
            *o = g * (s + x * s * (1.0 - s) * da);
        }
    }
}

/// GELU-tanh of every element.
pub fn forward(x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(out, x)| forward_row(x, out));
    out
}

/// The gradient of the input from the gradient `g` of [`forward`]'s output.
pub fn backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(out, (x, g))| backward_row(x, g, out));
    out
}

/// GELU-tanh as a burn backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait GeluOps: Backend {
    /// GELU's tanh approximation, element-wise.
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// GELU's tanh approximation as one operation (differentiable when `x` tracks gradients).
pub(crate) fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as GeluOps>::fused_gelu_tanh(x.into_dispatch()))
}

fn run(x: &FlexTensor) -> FlexTensor {
    flex_tensor(forward(&host(x)), x.shape().to_vec())
}

impl GeluOps for Flex {
    fn fused_gelu_tanh(x: FlexTensor) -> FlexTensor {
        run(&x)
    }
}

/// The autodiff node of one activation: one parent, its input kept.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        let g = grads.consume::<Flex>(&ops.node);
        let parents = ops.parents.map(|p| p.map(|node| node.id));
        register_gradients(grads, parents, [backward(&host(&x), &host(&g))], &[x]);
    }
}

impl<C: CheckpointStrategy> GeluOps for Autodiff<Flex, C> {
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [x.node()];
        let x = x.into_primitive();
        match GeluBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = run(&x);
                prep.finish(x, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(run(&x)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(x: f64) -> f64 {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044_715 * x.powi(3))).tanh())
    }

    #[test]
    fn the_activation_and_its_gradient_match_the_formula() {
        let x: Vec<f32> = (0..40_001)
            .map(|i| (i as f32 - 20_000.0) / 2_000.0)
            .collect();
        let y = forward(&x);
        let ones = vec![1.0; x.len()];
        let g = backward(&x, &ones);
        for ((&x, &y), &g) in x.iter().zip(&y).zip(&g) {
            let xd = x as f64;
            assert!(
                (y as f64 - exact(xd)).abs() < 2e-6 * xd.abs().max(1.0),
                "gelu({x}) = {y}"
            );
            let h = 1e-4;
            let numeric = (exact(xd + h) - exact(xd - h)) / (2.0 * h);
            assert!(
                (g as f64 - numeric).abs() < 1e-5,
                "gelu'({x}) = {g}, not {numeric}"
            );
        }
    }
}
