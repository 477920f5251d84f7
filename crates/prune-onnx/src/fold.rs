//! Folding batch norm into the layer before it, for export (`--fold-bn`).
//!
//! Eval-mode batch norm is `y = γ (z − μ) / √(σ² + ε) + β`. When `z = W x + b`
//! comes from a convolution or linear layer read by nothing else, with
//! `s = γ / √(σ² + ε)` per output channel:
//!
//! ```text
//! W' = s · W   (row o scaled by s_o)      b' = s · (b − μ) + β
//! ```
//!
//! and the BN node disappears (its readers read the producer). A batch norm
//! after anything else (an add, the input) stays.

use crate::error::Result;
use prune_core::Tensor;
use prune_graph::{Layer, Model};

/// A copy of `model` with every foldable batch norm folded.
pub fn fold_batch_norms(model: &Model) -> Result<Model> {
    let mut m = model.clone();
    loop {
        let Some((bn, prod)) = next_foldable(&m) else {
            return Ok(m);
        };
        fold_one(&mut m, bn, prod)?;
    }
}

/// The first (batch norm, producer) pair that can be folded.
fn next_foldable(m: &Model) -> Option<(usize, usize)> {
    let g = &m.graph;
    g.nodes.iter().enumerate().find_map(|(i, n)| {
        if !matches!(n.layer, Layer::BatchNorm { .. }) {
            return None;
        }
        let prod = g.index_of(n.inputs.first()?)?;
        let folds = matches!(
            g.nodes[prod].layer,
            Layer::Conv2d { .. } | Layer::Linear { .. }
        ) && g.consumers(&g.nodes[prod].name).len() == 1;
        folds.then_some((i, prod))
    })
}

fn fold_one(m: &mut Model, bn: usize, prod: usize) -> Result<()> {
    let bn_name = m.graph.nodes[bn].name.clone();
    let p_name = m.graph.nodes[prod].name.clone();
    let eps = match m.graph.nodes[bn].layer {
        Layer::BatchNorm { eps, .. } => eps,
        _ => unreachable!("next_foldable returns batch norms"),
    };
    let get = |f: &str| -> Result<Vec<f32>> {
        Ok(m.params.get(&format!("{bn_name}.{f}"))?.data().to_vec())
    };
    let (gamma, beta, mean, var) = (
        get("weight")?,
        get("bias")?,
        get("running_mean")?,
        get("running_var")?,
    );
    let s: Vec<f32> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let c = s.len();
    let w = m.params.get_mut(&format!("{p_name}.weight"))?;
    let per = w.numel() / c;
    for (o, row) in w.data_mut().chunks_mut(per).enumerate() {
        row.iter_mut().for_each(|v| *v *= s[o]);
    }
    let old_b = match m.params.get(&format!("{p_name}.bias")) {
        Ok(t) => t.data().to_vec(),
        Err(_) => vec![0.0; c],
    };
    let new_b: Vec<f32> = (0..c)
        .map(|o| s[o] * (old_b[o] - mean[o]) + beta[o])
        .collect();
    m.params
        .insert(format!("{p_name}.bias"), Tensor::from_vec(vec![c], new_b)?);
    match &mut m.graph.nodes[prod].layer {
        Layer::Conv2d { bias, .. } | Layer::Linear { bias, .. } => *bias = true,
        _ => unreachable!("next_foldable returns conv or linear producers"),
    }
    for f in ["weight", "bias", "running_mean", "running_var"] {
        m.params.remove(&format!("{bn_name}.{f}"));
    }
    m.graph.nodes.remove(bn);
    for n in &mut m.graph.nodes {
        for i in &mut n.inputs {
            if *i == bn_name {
                *i = p_name.clone();
            }
        }
    }
    Ok(())
}
