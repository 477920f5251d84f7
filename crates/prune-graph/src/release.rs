//! Dropping intermediate values during inference.
//!
//! [`predict`](crate::predict) needs only the output, so a node's value can
//! leave the tape as soon as every node that reads it has run. A node runs
//! at its own index, except one computed by another: the head and the add
//! of a fused ReLU run at that ReLU, and a convolution folded into a batch
//! norm runs where that batch norm runs (`fuse.rs`). With `at[k]` the index
//! at which node `k` runs, the value of node `j` is last read at
//!
//! ```text
//! last[j] = max({ at[k] : j ∈ inputs[k] } ∪ { at[j] })
//! ```
//!
//! Several nodes can share one tape variable (a fused ReLU's output is also
//! its head's and its add's entry; dropout in evaluation passes its input
//! through), so after node `i` runs a variable is dropped once every node
//! whose entry it is has `last ≤ i`. A convolution that runs on its own
//! after all (folding declined) runs earlier than planned, which only
//! keeps its input longer. Peak memory is then the few values a block
//! holds at once instead of every activation of the network, and the
//! buffers freed are the recently written ones the next layers reuse.

use crate::error::Result;
use crate::fuse::Plan;
use prune_core::{Tape, Var};
use std::collections::{BTreeMap, BTreeSet};

/// When each node's value is last read, and which variables are gone.
pub(crate) struct Release {
    last: Vec<usize>,
    dropped: BTreeSet<Var>,
}

impl Release {
    /// The last reads of every node of a graph with these `inputs` run by
    /// `plan`.
    pub(crate) fn new(plan: &Plan, inputs: &[Vec<usize>]) -> Self {
        let n = inputs.len();
        let mut at: Vec<usize> = (0..n).collect();
        for (&relu, f) in &plan.at {
            at[f.head] = relu;
            if let Some((add, _)) = f.add {
                at[add] = relu;
            }
        }
        // after the ReLUs: a batch norm may itself be a fused head
        for (&bn, &conv) in &plan.folded {
            at[conv] = at[bn];
        }
        let mut last = at.clone();
        for (k, ins) in inputs.iter().enumerate() {
            for &j in ins {
                last[j] = last[j].max(at[k]);
            }
        }
        // the output's value is the caller's
        if let Some(out) = last.last_mut() {
            *out = usize::MAX;
        }
        Self {
            last,
            dropped: BTreeSet::new(),
        }
    }

    /// Drops, after node `i` ran (`vars` holds the entries of nodes
    /// `0..=i`), every variable no node still to run reads, except the
    /// output's (the last node's).
    pub(crate) fn after(&mut self, i: usize, vars: &[Var], tape: &mut Tape<'_>) -> Result<()> {
        let mut read_until: BTreeMap<Var, usize> = BTreeMap::new();
        for (j, &v) in vars.iter().enumerate().take(i + 1) {
            let e = read_until.entry(v).or_insert(0);
            *e = (*e).max(self.last[j]);
        }
        for (v, until) in read_until {
            if until <= i && self.dropped.insert(v) {
                tape.take_value(v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::interp::{forward, run, ChannelMasks, RunOptions};
    use crate::{zoo, Model};
    use prune_core::{Tape, Tensor};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Inference with and without dropping values: the same output, bit for
    /// bit, and with dropping no value but the output left on the tape.
    fn check(model: &Model, x: &Tensor, masks: Option<&ChannelMasks>) {
        let opts = RunOptions::eval().with_masks(masks);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut kept = Tape::no_grad();
        let input = kept.constant(x.clone());
        let all = forward(model, &mut kept, input, &opts, &mut rng).expect("forward");
        let mut tape = Tape::no_grad();
        let input = tape.constant(x.clone());
        let f = run(model, &mut tape, input, &opts, &mut rng, true).expect("run");
        let (want, got) = (
            kept.value(all.output).unwrap(),
            tape.value(f.output).unwrap(),
        );
        assert!(!got.data().is_empty());
        assert_eq!(got.data(), want.data(), "{}", model.graph.name);
        // without dropping, the values stay
        let held = all
            .nodes
            .iter()
            .filter(|&&v| kept.value(v).is_ok_and(|t| !t.data().is_empty()));
        assert!(held.count() > 2, "{}", model.graph.name);
        for (j, &v) in f.nodes.iter().enumerate() {
            let left = tape.value(v).unwrap().data().len();
            assert!(
                v == f.output || left == 0,
                "{}: node {j} ('{}') keeps {left} values",
                model.graph.name,
                model.graph.nodes[j].name
            );
        }
    }

    #[test]
    fn inference_keeps_only_the_output_and_gives_the_same_values() {
        let mut r = ChaCha8Rng::seed_from_u64(7);
        for name in ["resnet20", "lenet5", "vgg-like", "lenet-300-100"] {
            let input: &[usize] = if name == "vgg-like" {
                &[3, 16, 16]
            } else {
                &[1, 28, 28]
            };
            let model = Model::init(zoo::build(name, input, 10).unwrap(), 3).unwrap();
            let mut shape = vec![2];
            shape.extend_from_slice(input);
            let x = Tensor::randn(shape, 0.0, 1.0, &mut r);
            check(&model, &x, None);
            // masks keep the masked nodes (and what reads them) unfused
            let shapes = crate::infer_shapes(&model.graph).unwrap();
            let masks: ChannelMasks = model
                .graph
                .nodes
                .iter()
                .zip(&shapes)
                .enumerate()
                .filter(|(i, (_, s))| i % 3 == 1 && s.len() == 3)
                .map(|(_, (n, s))| (n.name.clone(), (0..s[0]).map(|c| c % 2 == 0).collect()))
                .collect();
            assert!(!masks.is_empty() || name == "lenet-300-100");
            check(&model, &x, Some(&masks));
        }
    }
}
