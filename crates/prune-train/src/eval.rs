//! Evaluation: accuracy and mean cross-entropy over a dataset.

use crate::device::{model_device, onto};
use crate::error::Result;
use prune_data::Dataset;
use prune_graph::{predict, ChannelMasks, Model};
use serde::{Deserialize, Serialize};

/// Accuracy and loss on one dataset.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Fraction of correctly classified examples.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    pub examples: usize,
}

/// Evaluates `model` in eval mode on every example of `data`.
pub fn evaluate(
    model: &Model,
    data: &Dataset,
    masks: Option<&ChannelMasks>,
    batch_size: usize,
) -> Result<EvalResult> {
    let (mut correct, mut loss, mut n) = (0usize, 0f64, 0usize);
    for batch in data.batches(batch_size.max(1), None, 0)? {
        let (x, labels) = batch?;
        let x = onto(x, model_device(model))?;
        let logits = onto(predict(model, x, masks)?, prune_core::Device::Cpu)?;
        let k = logits.shape().get(1).copied().unwrap_or(1).max(1);
        let pred = logits.argmax_rows()?;
        for (row, (&p, &l)) in logits.data().chunks(k).zip(pred.iter().zip(&labels)) {
            correct += usize::from(p == l);
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            loss += lse - row.get(l).copied().unwrap_or(0.0) as f64;
        }
        n += labels.len();
    }
    let d = n.max(1) as f64;
    Ok(EvalResult {
        accuracy: correct as f64 / d,
        loss: loss / d,
        examples: n,
    })
}
