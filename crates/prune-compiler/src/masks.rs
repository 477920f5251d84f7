//! From per-gate keep masks to the set of units removed, the effective mask
//! at every gate, and the kept channels of every node.
//!
//! Rules, per unit `u` (see [`crate::groups`]):
//!
//! 1. `u` is a removal candidate iff at least one gate channel on `u` has a
//!    mask and every masked gate channel on `u` drops it (keep = OR over the
//!    gates' masks). Units without a masked gate are untouched.
//! 2. Pinned units (network input, model output, grouped convolutions) are
//!    kept.
//! 3. A flattened feature is removed when any channel it derives from is.
//! 4. Exactness: the masked model multiplies every gate output by the
//!    effective mask. A removed unit must be exactly zero wherever a
//!    convolution or linear layer reads it; a zero-propagation analysis of
//!    the masked model checks this. A unit that can reach a consumer without
//!    passing a masked gate (e.g. a residual sum with an un-gated branch) is
//!    kept, and a note says why. Steps 3–4 repeat until nothing changes.
//! 5. A removed unit leaves every tensor, except a flattened feature whose
//!    channel survives: the IR has no gather layer, so such a feature stays
//!    in the tensor and every gate on it multiplies it by zero (its weight
//!    columns in the next layer become zero after folding).
//! 6. A group (or a node) left without units is an error: pruning rules keep
//!    at least one unit per group, so a fully removed residual branch is
//!    never produced.

use crate::error::{CompileError, Result};
use crate::groups::{channels, Analysis, Role};
use crate::layers::describe;
use prune_graph::ir::Graph;
use prune_graph::ChannelMasks;

/// The pruning decision over a graph.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    /// Per node: output channel indices that stay in the tensor, ascending.
    pub kept: Vec<Vec<usize>>,
    /// Per node, per kept channel: masked, so gates multiply it by zero
    /// (flattened features dropped while their channel survives).
    pub zeroed: Vec<Vec<bool>>,
    /// The mask the masked model applies at every gate that loses a unit.
    pub effective: ChannelMasks,
    /// Requests that could not be honoured, and why.
    pub notes: Vec<String>,
}

/// Checks that every mask names a gate node and has its channel count.
pub(crate) fn validate_masks(graph: &Graph, an: &Analysis, masks: &ChannelMasks) -> Result<()> {
    for (name, keep) in masks {
        let i = graph.index_of(name).ok_or_else(|| CompileError::Mask {
            node: name.clone(),
            reason: format!("graph '{}' has no node of that name", graph.name),
        })?;
        let node = &graph.nodes[i];
        if an.roles[i] != Role::Gate {
            return Err(CompileError::Mask {
                node: name.clone(),
                reason: format!(
                    "is a {} node; masks apply to gates (sbp_gate, scale, batch_norm)",
                    node.layer.kind()
                ),
            });
        }
        let c = channels(&an.shapes[i]);
        if keep.len() != c {
            return Err(CompileError::Mask {
                node: name.clone(),
                reason: format!(
                    "has {} entries but node '{name}' has {c} output channels",
                    keep.len()
                ),
            });
        }
    }
    Ok(())
}

/// Which output channels of every node are exactly zero in the masked model
/// when the units in `drop` are masked at every gate: each layer's
/// [`crate::layers::LayerDesc::zeros`], then a gate zeroes its dropped units.
fn zero_channels(graph: &Graph, an: &Analysis, drop: &[bool]) -> Vec<Vec<bool>> {
    let mut zero: Vec<Vec<bool>> = Vec::with_capacity(graph.nodes.len());
    for (i, node) in graph.nodes.iter().enumerate() {
        let c = channels(&an.shapes[i]);
        let inputs: Vec<(&[bool], &[usize])> = an.inputs[i]
            .iter()
            .map(|&j| (zero[j].as_slice(), an.shapes[j].as_slice()))
            .collect();
        let mut z = describe(&node.layer).zeros(&node.layer, &inputs, c);
        z.resize(c, false);
        if an.roles[i] == Role::Gate {
            for (k, zk) in z.iter_mut().enumerate() {
                *zk |= drop[an.unit_of[i][k]];
            }
        }
        zero.push(z);
    }
    zero
}

/// Builds the pruning plan for `masks`.
pub(crate) fn plan(graph: &Graph, an: &Analysis, masks: &ChannelMasks) -> Result<Plan> {
    validate_masks(graph, an, masks)?;
    let nu = an.n_units;
    // 1. Group union: keep = OR over the masked gate channels of each unit.
    let mut requested: Vec<Option<bool>> = vec![None; nu];
    for (name, keep) in masks {
        let Some(i) = graph.index_of(name) else {
            continue;
        };
        for (k, &kp) in keep.iter().enumerate() {
            let u = an.unit_of[i][k];
            requested[u] = Some(requested[u].unwrap_or(false) || kp);
        }
    }
    let mut notes = Vec::new();
    // 2. Pinned units are kept.
    let mut forced_keep = vec![false; nu];
    let mut pinned_groups: Vec<(usize, usize, String)> = Vec::new();
    for u in 0..nu {
        if let (Some(false), Some(why)) = (requested[u], &an.pinned[u]) {
            forced_keep[u] = true;
            let g = an.unit_group[u];
            match pinned_groups.iter_mut().find(|(pg, _, _)| *pg == g) {
                Some(entry) => entry.1 += 1,
                None => pinned_groups.push((g, 1, why.clone())),
            }
        }
    }
    for (g, count, why) in pinned_groups {
        notes.push(format!(
            "group {g}: {count} unit(s) masked but kept ({why} is never pruned)"
        ));
    }
    // 3–4. Closure over flattened features and the exactness fixpoint.
    let mut drop: Vec<bool>;
    loop {
        drop = (0..nu)
            .map(|u| requested[u] == Some(false) && !forced_keep[u])
            .collect();
        let mut changed = true;
        while changed {
            changed = false;
            for u in 0..nu {
                if !drop[u] && !forced_keep[u] && an.sources[u].iter().any(|&s| drop[s]) {
                    drop[u] = true;
                    changed = true;
                }
            }
        }
        let zero = zero_channels(graph, an, &drop);
        let mut bad: Vec<(usize, String)> = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            if !matches!(an.roles[i], Role::Producer | Role::Grouped) {
                continue;
            }
            let j = an.inputs[i][0];
            for (k, &u) in an.unit_of[j].iter().enumerate() {
                if drop[u] && !zero[j][k] && !bad.iter().any(|(b, _)| *b == u) {
                    bad.push((
                        u,
                        format!(
                            "'{}' reads channel {k} of '{}', which no masked gate zeroes",
                            node.name, graph.nodes[j].name
                        ),
                    ));
                }
            }
        }
        // Flattened features tied together (e.g. by a sum of two flattens)
        // exist physically only if all their channels do.
        for u in 0..nu {
            let srcs = &an.sources[u];
            if srcs.iter().any(|&s| drop[s]) && srcs.iter().any(|&s| !drop[s]) {
                for &s in srcs {
                    if drop[s] && !bad.iter().any(|(b, _)| *b == s) {
                        bad.push((
                            s,
                            format!(
                                "its flattened features are tied to features of kept channels \
                                 (group {})",
                                an.unit_group[u]
                            ),
                        ));
                    }
                }
            }
        }
        if bad.is_empty() {
            break;
        }
        let mut by_group: Vec<(usize, usize, String)> = Vec::new();
        for (u, why) in bad {
            forced_keep[u] = true;
            // A kept flattened feature needs its channels.
            for &s in &an.sources[u] {
                forced_keep[s] = true;
            }
            let g = an.unit_group[u];
            match by_group.iter_mut().find(|(pg, _, _)| *pg == g) {
                Some(entry) => entry.1 += 1,
                None => by_group.push((g, 1, why)),
            }
        }
        for (g, count, why) in by_group {
            notes.push(format!(
                "group {g}: {count} masked unit(s) kept: they cannot be removed exactly \
                 ({why})"
            ));
        }
    }
    // 6. No empty group, no empty node.
    for grp in &an.groups {
        let units = an.group_units(grp.id);
        if !units.is_empty() && units.iter().all(|&u| drop[u]) {
            let members: Vec<String> = grp
                .gates
                .iter()
                .chain(&grp.producers)
                .map(|m| m.node.clone())
                .collect();
            return Err(CompileError::EmptyGroup {
                group: grp.id,
                size: grp.size,
                members: members.join(", "),
            });
        }
    }
    // A dropped flattened feature whose channel survives cannot leave the
    // tensor (the IR has no gather): it stays, multiplied by zero at its gates.
    let removed: Vec<bool> = (0..nu)
        .map(|u| drop[u] && an.sources[u].iter().all(|&s| drop[s]))
        .collect();
    let kept: Vec<Vec<usize>> = an
        .unit_of
        .iter()
        .map(|units| (0..units.len()).filter(|&k| !removed[units[k]]).collect())
        .collect();
    let zeroed: Vec<Vec<bool>> = an
        .unit_of
        .iter()
        .zip(&kept)
        .map(|(units, k)| k.iter().map(|&c| drop[units[c]]).collect())
        .collect();
    let n_zeroed = (0..nu).filter(|&u| drop[u] && !removed[u]).count();
    if n_zeroed > 0 {
        notes.push(format!(
            "{n_zeroed} single feature(s) of kept channels or of the input are masked: their \
             weight columns are zeroed, and linear layers that read them skip them through a \
             `select` gather"
        ));
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let c = an.unit_of[i].len();
        if c > 0 && an.unit_of[i].iter().all(|&u| drop[u]) {
            return Err(CompileError::EmptyNode {
                node: node.name.clone(),
                channels: c,
            });
        }
    }
    let mut effective = ChannelMasks::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if an.roles[i] == Role::Gate && an.unit_of[i].iter().any(|&u| drop[u]) {
            effective.insert(
                node.name.clone(),
                an.unit_of[i].iter().map(|&u| !drop[u]).collect(),
            );
        }
    }
    Ok(Plan {
        kept,
        zeroed,
        effective,
        notes,
    })
}

/// The mask the masked model applies at every gate node after the group
/// union (and the exactness rules above): gates that lose no unit are
/// omitted. Errors on a mask for an unknown or non-gate node, a mask of the
/// wrong length, or a group that would lose all its units.
pub fn effective_masks(graph: &Graph, masks: &ChannelMasks) -> Result<ChannelMasks> {
    let an = Analysis::new(graph)?;
    Ok(plan(graph, &an, masks)?.effective)
}
