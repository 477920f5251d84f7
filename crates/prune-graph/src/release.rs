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

/// When each node's value is last read, and which variables are gone.
pub(crate) struct Release {
    last: Vec<usize>,
    /// `(last read, node)` of every node but the output, in order, and how
    /// many of them are done.
    order: Vec<(usize, usize)>,
    done: usize,
    /// By tape index: dropped already.
    dropped: Vec<bool>,
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
        let mut order: Vec<(usize, usize)> = last
            .iter()
            .take(n.saturating_sub(1))
            .copied()
            .zip(0..)
            .collect();
        order.sort_unstable();
        Self {
            last,
            order,
            done: 0,
            dropped: Vec::new(),
        }
    }

    /// Drops, after node `i` ran (`vars` holds the entries of nodes
    /// `0..=i`), the variables of the nodes last read by now, unless a
    /// node read later shares the variable, and never the output's.
    pub(crate) fn after(&mut self, i: usize, vars: &[Var], tape: &mut Tape<'_>) -> Result<()> {
        // (`≤`: absorbed nodes do not call this when they are reached)
        while let Some(&(_, j)) = self.order.get(self.done).filter(|(l, _)| *l <= i) {
            self.done += 1;
            let v = vars[j];
            let n = self.last.len();
            let shared = |(k, &u): (usize, &Var)| u == v && (self.last[k] > i || k + 1 == n);
            if self.dropped.get(v.index()) == Some(&true) || vars.iter().enumerate().any(shared) {
                continue;
            }
            tape.take_value(v)?;
            if self.dropped.len() <= v.index() {
                self.dropped.resize(v.index() + 1, false);
            }
            self.dropped[v.index()] = true;
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
