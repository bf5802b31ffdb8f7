//! Data-parallel training on burn's collective operations.
//!
//! Each device (a *peer*) holds a replica of the model and its own optimiser state. A step's
//! micro-batches (`train.accumulation` of them, drawn in order from the one batch stream) are
//! dealt to the peers round-robin; each peer runs forward and backward on its share on its own
//! thread and accumulates its gradients; then burn's `Tensor::all_reduce` sums every parameter's
//! gradient across the peers, and every peer applies the same AdamW update to its replica, so the
//! replicas stay equal without sending weights. The maths is gradient accumulation's: a run gives
//! the same losses on one device or several (up to the order of floating-point sums), so
//! `train.devices` can change on resume.
//!
//! Why an explicit all-reduce after accumulation rather than burn's autodiff gradient-sync server
//! (parameters marked `set_distributed`, synchronised inside every backward): the server syncs
//! at every micro-batch's backward, where one collective per optimiser step is enough, and the
//! mark would have to survive dnalm's own AdamW (`optim.rs`), which rebuilds every parameter.

use dnalm_model::{
    burn::{
        module::{Module, ModuleVisitor, Param},
        optim::{GradientsAccumulator, GradientsParams},
        tensor::{distributed::ReduceOperation, Device, Tensor},
    },
    DnaLm, ModelError,
};

use crate::{
    data::Batch,
    loss::{batch_loss, batch_loss_recomputing},
};

/// One micro-batch of a step.
pub(crate) struct Micro {
    /// Its position among the step's micro-batches.
    pub index: usize,
    /// Its dropout seed.
    pub dropout_seed: u64,
    /// The batch.
    pub batch: Batch,
}

/// What one micro-batch's forward pass gave.
pub(crate) struct MicroResult {
    /// Its position among the step's micro-batches.
    pub index: usize,
    /// The loss (NaN or infinite stops the run).
    pub loss: f64,
    /// Loss positions.
    pub targets: usize,
    /// Of them, predicted right.
    pub correct: usize,
}

/// A peer's share of a step.
pub(crate) struct PeerOutput {
    /// Its accumulated gradients (none when no micro-batch had a loss position).
    pub grads: Option<GradientsParams>,
    /// Its micro-batches' results (the ones with a loss), in its order.
    pub micros: Vec<MicroResult>,
}

/// Forward and backward of `micros` on `model`, each loss divided by `accumulation` (the step's
/// micro-batch count over all peers), gradients accumulated; with `recompute`, each block is
/// recomputed in the backward pass (activation checkpointing) instead of kept. Stops at a
/// non-finite loss, which is the last result.
pub(crate) fn peer_step(
    model: &DnaLm,
    micros: &[&Micro],
    accumulation: usize,
    recompute: bool,
) -> Result<PeerOutput, ModelError> {
    let mut grads = GradientsAccumulator::<DnaLm>::new();
    let mut any = false;
    let mut results = Vec::with_capacity(micros.len());
    for micro in micros {
        let seed = Some(micro.dropout_seed);
        let (out, kept) = if recompute {
            match batch_loss_recomputing(model, &micro.batch, seed)? {
                Some((out, kept)) => (out, Some(kept)),
                None => continue,
            }
        } else {
            match batch_loss(model, &micro.batch, seed)? {
                Some(out) => (out, None),
                None => continue,
            }
        };
        let loss = out.loss.clone().into_scalar::<f32>() as f64;
        results.push(MicroResult {
            index: micro.index,
            loss,
            targets: out.targets,
            correct: out.correct,
        });
        if !loss.is_finite() {
            break;
        }
        let g = (out.loss / accumulation as f64).backward();
        let micro_grads = match kept {
            Some(kept) => kept.backward(model, g),
            None => GradientsParams::from_grads(g, model),
        };
        grads.accumulate(model, micro_grads);
        any = true;
    }
    Ok(PeerOutput {
        grads: any.then(|| grads.grads()),
        micros: results,
    })
}

/// Sums each parameter's gradient across the peers (burn's `all_reduce`), leaving every peer
/// with the total. A peer without a gradient for a parameter (none of its micro-batches had a
/// loss position) contributes zeros.
pub(crate) fn all_reduce_gradients<M: Module>(
    model: &M,
    grads: &mut [GradientsParams],
    devices: &[Device],
) {
    struct AllReduce<'a> {
        grads: &'a mut [GradientsParams],
        devices: &'a [Device],
    }
    impl ModuleVisitor for AllReduce<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let members: Vec<Option<Tensor<D>>> = self
                .grads
                .iter_mut()
                .map(|g| g.remove::<D>(param.id))
                .collect();
            if members.iter().all(Option::is_none) {
                return;
            }
            let shape = param.val().shape();
            let members: Vec<Tensor<D>> = members
                .into_iter()
                .zip(self.devices)
                .map(|(g, device)| {
                    g.unwrap_or_else(|| Tensor::zeros(shape.clone(), &device.clone().inner()))
                })
                .collect();
            for (g, reduced) in self
                .grads
                .iter_mut()
                .zip(Tensor::all_reduce(members, ReduceOperation::Sum))
            {
                g.register::<D>(param.id, reduced);
            }
        }
    }
    model.visit(&mut AllReduce { grads, devices });
}

/// The step's micro-batches dealt to `peers` round-robin (micro-batch `i` to peer `i % peers`).
pub(crate) fn deal(micros: &[Micro], peers: usize) -> Vec<Vec<&Micro>> {
    (0..peers)
        .map(|p| micros.iter().skip(p).step_by(peers).collect())
        .collect()
}
