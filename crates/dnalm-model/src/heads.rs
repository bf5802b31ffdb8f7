//! Task heads on top of a [`crate::DnaLm`]'s hidden states: sequence classification/regression
//! (pooled) and per-token classification.

use burn::{
    module::{Module, Param},
    nn::Linear,
    tensor::{activation::gelu, Device, Tensor, TensorData},
};

use crate::block::linear;

/// How a sequence's token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over real (unpadded) tokens.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over real tokens.
    Max,
    /// The last real token: the one state of a causal model (decoder, Hyena) that has seen the
    /// whole sequence, as `transformers`' sequence classification of decoders takes.
    Last,
}

/// Pools `[rows, len, d]` states into `[rows, d]`; `real` is `[rows, len]`, 1.0 for real tokens.
pub fn pool(hidden: Tensor<3>, real: Tensor<2>, pooling: Pooling) -> Tensor<2> {
    let [rows, _, d] = hidden.dims();
    match pooling {
        Pooling::Cls => hidden.slice([0..rows, 0..1, 0..d]).reshape([rows, d]),
        Pooling::Mean => {
            let weights = real.clone().unsqueeze_dim::<3>(2);
            let sum = (hidden * weights).sum_dim(1).reshape([rows, d]);
            let count = real.sum_dim(1).clamp_min(1.0);
            sum / count
        }
        Pooling::Max => {
            let pad = (real.neg() + 1.0).unsqueeze_dim::<3>(2) * -1e9;
            (hidden + pad).max_dim(1).reshape([rows, d])
        }
        Pooling::Last => {
            // A real token whose right neighbour is not real (or the row's end): the last of
            // each row's contiguous span of real tokens.
            // Shifted left by one with a 0 after the end (never an empty slice, even at len 1).
            let len = real.dims()[1];
            let padded = Tensor::cat(vec![real.clone(), real.zeros_like()], 1);
            let next = padded.slice([0..rows, 1..len + 1]);
            let last = (real * (next.neg() + 1.0)).unsqueeze_dim::<3>(2);
            (hidden * last).sum_dim(1).reshape([rows, d])
        }
    }
}

/// Sequence-level head on the pooled state (classification logits or a regression value per
/// output): `dense -> GELU -> out`, or `out` alone (a linear head, as LP-FT initialises from a
/// linear probe).
#[derive(Module, Debug)]
pub struct SequenceHead {
    /// `d_model -> d_model`; absent in a linear head.
    pub dense: Option<Linear>,
    /// `d_model -> outputs`.
    pub out: Linear,
}

impl SequenceHead {
    /// A `dense -> GELU -> out` head with `outputs` outputs (classes, or 1 for regression).
    pub fn new(d_model: usize, outputs: usize, device: &Device) -> Self {
        SequenceHead {
            dense: Some(linear(d_model, d_model, true, device)),
            out: linear(d_model, outputs, true, device),
        }
    }

    /// A linear head (`out` alone) with `outputs` outputs.
    pub fn linear(d_model: usize, outputs: usize, device: &Device) -> Self {
        SequenceHead {
            dense: None,
            out: linear(d_model, outputs, true, device),
        }
    }

    /// A linear head with the given weights (`d_model x outputs`, row-major) and biases.
    pub fn linear_from(
        weights: Vec<f32>,
        bias: Vec<f32>,
        d_model: usize,
        device: &Device,
    ) -> Result<Self, crate::ModelError> {
        let outputs = bias.len();
        if weights.len() != d_model * outputs {
            return Err(crate::ModelError::Config {
                field: "head",
                message: format!(
                    "a linear head of {d_model} inputs and {outputs} outputs needs {} weights, \
                     got {}",
                    d_model * outputs,
                    weights.len()
                ),
            });
        }
        let mut out = linear(d_model, outputs, true, device);
        out.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(weights, [d_model, outputs]),
            device,
        ));
        out.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [outputs]),
            device,
        )));
        Ok(SequenceHead { dense: None, out })
    }

    /// # Shapes
    /// - `pooled`: `[rows, d_model]`
    /// - output: `[rows, outputs]`
    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        match &self.dense {
            Some(dense) => self.out.forward(gelu(dense.forward(pooled))),
            None => self.out.forward(pooled),
        }
    }
}

/// Per-token classification head.
#[derive(Module, Debug)]
pub struct TokenHead {
    /// `d_model -> classes`.
    pub out: Linear,
}

impl TokenHead {
    /// A head with `classes` outputs.
    pub fn new(d_model: usize, classes: usize, device: &Device) -> Self {
        TokenHead {
            out: linear(d_model, classes, true, device),
        }
    }

    /// # Shapes
    /// - `hidden`: `[rows, len, d_model]`
    /// - output: `[rows, len, classes]`
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.out.forward(hidden)
    }
}
