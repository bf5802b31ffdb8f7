//! Activation checkpointing: a training forward pass that keeps only each block's input, and a
//! backward pass that recomputes each block from it.
//!
//! A plain training step keeps every intermediate of every block for the backward pass: about
//! 225 KB per token for a 4-block Hyena model of width 256 and 340 KB for a 6-block Caduceus-PS,
//! which puts 131 k-token contexts out of reach of a workstation. With
//! [`DnaLm::forward_recomputing`] the forward pass runs the blocks without autodiff, keeping each
//! block's input (`hidden` floats per token per block); [`BlockRecompute::backward`] then walks
//! the blocks from the last to the first, recomputing each one with autodiff from its kept input
//! and back-propagating the gradient that reached its output. At most one block's intermediates
//! are alive at a time; the price is one more forward pass of the blocks (a training step does
//! about a third more arithmetic). A Caduceus block is recomputed in parts, one strand and one
//! scan direction at a time ([`crate::block::Block::forward_part`]), a quarter of its
//! intermediates each.
//!
//! Why by hand rather than burn's checkpointing strategy (`BalancedCheckpointing`): burn decides
//! per operation, recomputing memory-bound operations and keeping the outputs of compute-bound
//! ones (matrix products, FFTs, the fused scan), and those are most of the memory here. Block
//! granularity needs nothing but burn's public tensor API: separate backward passes that each
//! reuse the parameter leaves, their gradients summed with burn's `GradientsAccumulator`.
//! Dropout masks are recomputed identically: each block's dropout stream position is recorded
//! in the forward pass and restored before it is recomputed.

use burn::{
    module::Module,
    optim::{GradientsAccumulator, GradientsParams},
    tensor::{Gradients, Tensor},
};

use crate::{block::BlockContext, DnaLm, ModelError, ModelInput};

/// What [`DnaLm::forward_recomputing`] keeps for its backward pass.
#[derive(Debug)]
pub struct BlockRecompute {
    input: ModelInput,
    ctx: BlockContext,
    /// Each block's input, without autodiff, first block first.
    inputs: Vec<Tensor<3>>,
    /// The dropout stream's position at the start of each block.
    dropout_calls: Vec<u64>,
    /// The last block's output as an autodiff leaf: where the loss's own backward pass stops.
    leaf: Tensor<3>,
}

impl DnaLm {
    /// [`DnaLm::forward`] for training with activation checkpointing: the blocks run without
    /// autodiff, keeping only their inputs; the final norm (and whatever the caller computes from
    /// the output: heads, loss) is differentiable as usual. Call [`BlockRecompute::backward`]
    /// with the loss's gradients to get every parameter's gradient, the blocks' and the
    /// embedding's included. Permutation LM's two-stream forward has no such variant.
    ///
    /// # Shapes
    /// - output: `[rows, len, hidden]`, as [`DnaLm::forward`]
    pub fn forward_recomputing(
        &self,
        input: &ModelInput,
    ) -> Result<(Tensor<3>, BlockRecompute), ModelError> {
        self.check(input)?;
        let plain = self.valid();
        let ctx = plain.context(input, &input.mask);
        let mut x = plain.embed(input);
        let mut inputs = Vec::with_capacity(plain.blocks.len());
        let mut dropout_calls = Vec::with_capacity(plain.blocks.len());
        for block in &plain.blocks {
            dropout_calls.push(ctx.dropout.as_ref().map_or(0, |d| d.calls.get()));
            inputs.push(x.clone());
            x = block.forward(x, &ctx);
        }
        let leaf = x.autodiff().require_grad();
        let mut hidden = self.finish(leaf.clone());
        if let Some(keep) = self.padding_zeroes(input) {
            hidden = hidden * keep;
        }
        let kept = BlockRecompute {
            input: input.clone(),
            ctx,
            inputs,
            dropout_calls,
            leaf,
        };
        Ok((hidden, kept))
    }
}

impl BlockRecompute {
    /// Every parameter's gradient, from `grads`, the gradients of a loss computed from
    /// [`DnaLm::forward_recomputing`]'s output: the gradients `grads` holds (final norm, heads),
    /// then each block recomputed from its input, last block first, then the embedding. `model`
    /// is the model that made the forward pass.
    pub fn backward(self, model: &DnaLm, grads: Gradients) -> GradientsParams {
        let mut total = GradientsAccumulator::<DnaLm>::new();
        let mut upstream = self.leaf.grad(&grads);
        total.accumulate(model, GradientsParams::from_grads(grads, model));
        for (i, block) in model.blocks.iter().enumerate().rev() {
            // No gradient reached this block's output: nothing below it has one either.
            let Some(g) = upstream else {
                return total.grads();
            };
            if let Some(stream) = &self.ctx.dropout {
                stream.calls.set(self.dropout_calls[i]);
            }
            let x = self.inputs[i].clone().autodiff().require_grad();
            let width = x.dims()[2];
            let mut g_x: Option<Tensor<3>> = None;
            for part in 0..block.recompute_parts(&self.ctx) {
                let (y, channels) = block.forward_part(x.clone(), &self.ctx, part);
                let g = if channels.len() == width {
                    g.clone()
                } else {
                    g.clone().narrow(2, channels.start, channels.len())
                };
                let grads = (y * g).sum().backward();
                if let Some(share) = x.grad(&grads) {
                    g_x = Some(match g_x {
                        Some(sum) => sum + share,
                        None => share,
                    });
                }
                total.accumulate(model, GradientsParams::from_grads(grads, model));
            }
            upstream = g_x;
        }
        if let Some(g) = upstream {
            let grads = (model.embed(&self.input) * g).sum().backward();
            total.accumulate(model, GradientsParams::from_grads(grads, model));
        }
        total.grads()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use burn::tensor::TensorData;

    use super::*;
    use crate::{
        tensors::named_gradients, Architecture, AttentionPattern, CaduceusOptions, ModelConfig,
    };

    fn config(architecture: Architecture, dropout: f64, rc: bool) -> ModelConfig {
        let mut cfg = ModelConfig::new(architecture, 12);
        cfg.n_layers = 3;
        cfg.d_model = 16;
        cfg.n_heads = 2;
        cfg.d_ffn = 32;
        cfg.max_positions = 64;
        cfg.dropout = dropout;
        if architecture == Architecture::Caduceus {
            cfg.caduceus = Some(CaduceusOptions {
                d_state: 4,
                rc_equivariant: rc,
                complement_map: (0..12)
                    .map(|i| match i {
                        7 => 10,
                        10 => 7,
                        8 => 9,
                        9 => 8,
                        other => other,
                    })
                    .filter(|_| rc)
                    .collect(),
                ..Default::default()
            });
        }
        cfg
    }

    /// A loss that reaches every output position, and the gradients of the two forward passes.
    fn both(model: &DnaLm, input: &ModelInput) -> [(f32, BTreeMap<String, Vec<f32>>); 2] {
        let [rows, len, width] = model.forward(input).unwrap().dims();
        let n = rows * len * width;
        let weights: Vec<f32> = (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0).collect();
        let weights = Tensor::<3>::from_data(
            TensorData::new(weights, [rows, len, width]),
            &model.device(),
        );
        let loss = |hidden: Tensor<3>| (hidden * weights.clone()).sum();
        let plain = {
            let l = loss(model.forward(input).unwrap());
            let value = l.clone().into_scalar::<f32>();
            (value, GradientsParams::from_grads(l.backward(), model))
        };
        let recomputed = {
            let (hidden, kept) = model.forward_recomputing(input).unwrap();
            let l = loss(hidden);
            let value = l.clone().into_scalar::<f32>();
            (value, kept.backward(model, l.backward()))
        };
        [plain, recomputed].map(|(v, g)| (v, named_gradients(model, &g)))
    }

    /// Recomputing the blocks gives the plain backward pass's loss and the same gradient for
    /// every parameter (to float rounding), with dropout on and padding in the batch, for every
    /// architecture and for the fused and the reference encoder layer; and without dropout for
    /// Caduceus-PS and -Ph, whose blocks are recomputed in parts (strand x scan direction).
    #[test]
    fn recomputed_blocks_give_the_plain_gradients() {
        let device = crate::cpu().autodiff();
        // (architecture, fused, dropout, reverse-complement equivariant, parts per block)
        let cases = [
            (Architecture::Encoder, true, 0.1, false, 1),
            (Architecture::Encoder, false, 0.1, false, 1),
            (Architecture::Decoder, true, 0.1, false, 1),
            (Architecture::Hyena, true, 0.1, false, 1),
            (Architecture::Caduceus, true, 0.1, true, 1),
            (Architecture::Caduceus, true, 0.0, true, 4),
            (Architecture::Caduceus, false, 0.0, false, 2),
        ];
        for (architecture, fused, dropout, rc, parts) in cases {
            let cfg = config(architecture, dropout, rc);
            let model = DnaLm::seeded(&cfg, &device, 3)
                .unwrap()
                .with_fused_layers(fused);
            let rows = vec![
                vec![7, 8, 9, 10, 7, 7, 9, 8, 10, 10],
                vec![9, 9, 7, 10, 8, 8, 7],
            ];
            let pattern = match architecture {
                Architecture::Decoder | Architecture::Hyena => AttentionPattern::Causal,
                _ => AttentionPattern::Bidirectional,
            };
            let mut input = ModelInput::from_rows(&rows, pattern);
            input.dropout_seed = Some(11);
            let ctx = model.context(&input, &input.mask);
            assert_eq!(model.blocks[0].recompute_parts(&ctx), parts);
            let [(plain_loss, plain), (loss, recomputed)] = both(&model, &input);
            let what = format!("{architecture:?}, fused {fused}, dropout {dropout}, rc {rc}");
            assert!(
                (plain_loss - loss).abs() <= 1e-4 * plain_loss.abs().max(1.0),
                "{what}"
            );
            assert_eq!(
                plain.keys().collect::<Vec<_>>(),
                recomputed.keys().collect::<Vec<_>>(),
                "{what}: the parameters with a gradient"
            );
            let mut compared = 0;
            for (name, a) in &plain {
                let b = &recomputed[name];
                let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(diff <= 1e-4 * scale, "{what}: {name} differs by {diff}");
                compared += 1;
            }
            assert!(compared > 10, "{what}: only {compared} gradients");
        }
    }
}
