//! Dependency analysis: which channels must be removed together.
//!
//! Every output channel of every node is an element (`[C, H, W]` outputs
//! have `C` elements, `[F]` outputs have `F`). Elements that must be kept or
//! removed together are joined with union-find; each resulting class is a
//! *unit*. The joins are:
//!
//! * channelwise layers (batch norm, gates, ReLU, pooling, dropout) and
//!   global average pooling: output channel `c` ↔ input channel `c`;
//! * depthwise convolutions (`groups == in == out`): output `c` ↔ input `c`;
//! * `Add`: channel `c` of every input ↔ channel `c` of the output
//!   (identity shortcuts included);
//! * `Concat`: output channel `offset_k + c` ↔ channel `c` of input `k`.
//!
//! Convolutions, linear layers, the input and `Flatten` start new elements.
//! A flattened feature `(c, hw)` is a new element *derived* from channel `c`:
//! it can only survive if channel `c` survives (and any gate on the flattened
//! space keeps it).
//!
//! Units are then gathered into *channel groups* for reporting: all units
//! produced by one producer (or one segment of a concatenation, tracked
//! through channelwise layers and sums) belong to one group. A group lists
//! its producers, gates, passthrough members and consumers.
//!
//! Units of the network input, of the model output and of the input and
//! output of grouped (non-depthwise) convolutions are pinned: never removed.

use crate::error::Result;
pub(crate) use crate::layers::Role;
use crate::layers::{describe, role};
use prune_graph::infer_shapes;
use prune_graph::ir::Graph;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Union-find with path halving and union by size.
#[derive(Clone, Debug)]
pub(crate) struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    pub(crate) fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    pub(crate) fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let (big, small) = if self.size[ra] >= self.size[rb] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small] = big;
        self.size[big] += self.size[small];
    }

    /// Dense class ids `0..k`, numbered by first appearance in index order.
    pub(crate) fn dense_ids(&mut self) -> (Vec<usize>, usize) {
        let n = self.parent.len();
        let mut id_of_root = vec![usize::MAX; n];
        let mut ids = Vec::with_capacity(n);
        let mut next = 0;
        for x in 0..n {
            let r = self.find(x);
            if id_of_root[r] == usize::MAX {
                id_of_root[r] = next;
                next += 1;
            }
            ids.push(id_of_root[r]);
        }
        (ids, next)
    }
}

/// How a consumer reads the units of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum ConsumerKind {
    /// Input channels of a convolution.
    ConvInput,
    /// Input features of a linear layer.
    LinearInput,
    /// A flatten: each channel becomes `block` consecutive features.
    FlattenBlock { block: usize },
}

/// A node reading a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub node: String,
    pub how: ConsumerKind,
}

/// A node belonging to a group, with its layer type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node: String,
    pub op: String,
}

/// A set of units that live and die together with one producer (or one
/// segment of a concatenation): the "channel space" of a layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelGroup {
    pub id: usize,
    /// Number of units (channels or features).
    pub size: usize,
    /// Nodes whose outputs define the units: convolutions, linear layers,
    /// the input, flattens (for feature groups).
    pub producers: Vec<Member>,
    /// Gate nodes on the group: SBP gates, scales, batch norms.
    pub gates: Vec<Member>,
    /// Nodes carrying the units unchanged: activations, pooling, dropout,
    /// sums, concatenations, depthwise convolutions.
    pub passthrough: Vec<Member>,
    /// Nodes reading the units: convolution/linear inputs, flattens.
    pub consumers: Vec<Consumer>,
    /// For a group of flattened features: the channel groups they come from.
    pub derived_from: Vec<usize>,
    /// Why some units of the group can never be removed, if so.
    pub pinned: Option<String>,
}

impl fmt::Display for ChannelGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ms: &[Member]| {
            if ms.is_empty() {
                "-".to_string()
            } else {
                ms.iter()
                    .map(|m| format!("{} ({})", m.node, m.op))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        write!(f, "group {}: {} units", self.id, self.size)?;
        if !self.derived_from.is_empty() {
            let from: Vec<String> = self.derived_from.iter().map(|g| g.to_string()).collect();
            write!(f, ", flattened from group {}", from.join(", "))?;
        }
        match &self.pinned {
            Some(why) => writeln!(f, " [pinned: {why}]")?,
            None => writeln!(f)?,
        }
        writeln!(f, "  producers:   {}", list(&self.producers))?;
        writeln!(f, "  gates:       {}", list(&self.gates))?;
        writeln!(f, "  passthrough: {}", list(&self.passthrough))?;
        let consumers = if self.consumers.is_empty() {
            "-".to_string()
        } else {
            self.consumers
                .iter()
                .map(|c| match &c.how {
                    ConsumerKind::ConvInput => format!("{} (conv input)", c.node),
                    ConsumerKind::LinearInput => format!("{} (linear input)", c.node),
                    ConsumerKind::FlattenBlock { block } => {
                        format!("{} (flatten, {block} features per channel)", c.node)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "  consumers:   {consumers}")
    }
}

/// The full analysis, shared by masks, surgery and reporting.
#[derive(Clone, Debug)]
pub(crate) struct Analysis {
    /// Per-example output shape of every node.
    pub shapes: Vec<Vec<usize>>,
    /// Input node indices of every node.
    pub inputs: Vec<Vec<usize>>,
    /// Role of every node.
    pub roles: Vec<Role>,
    /// Unit of every output channel of every node.
    pub unit_of: Vec<Vec<usize>>,
    /// Number of units.
    pub n_units: usize,
    /// For units of flattened features: the channel units they derive from.
    pub sources: Vec<Vec<usize>>,
    /// Why a unit can never be removed.
    pub pinned: Vec<Option<String>>,
    /// Group of every unit.
    pub unit_group: Vec<usize>,
    /// The groups.
    pub groups: Vec<ChannelGroup>,
}

/// Number of channels (dimension 0) of a per-example shape.
pub(crate) fn channels(shape: &[usize]) -> usize {
    shape.first().copied().unwrap_or(0)
}

/// Features per channel when a tensor of this shape is flattened.
pub(crate) fn block(shape: &[usize]) -> usize {
    shape.iter().skip(1).product::<usize>().max(1)
}

impl Analysis {
    /// Runs the analysis.
    pub(crate) fn new(graph: &Graph) -> Result<Self> {
        let shapes = infer_shapes(graph)?;
        let inputs = graph.input_indices()?;
        let n = graph.nodes.len();
        let roles: Vec<Role> = graph.nodes.iter().map(|n| role(&n.layer)).collect();

        // Elements: one per output channel of every node.
        let mut base = Vec::with_capacity(n);
        let mut total = 0;
        for s in &shapes {
            base.push(total);
            total += channels(s);
        }
        let mut uf = UnionFind::new(total);
        let elem = |i: usize, c: usize| base[i] + c;
        for i in 0..n {
            let c_out = channels(&shapes[i]);
            match roles[i] {
                Role::Passthrough | Role::Gate | Role::Depthwise => {
                    let j = inputs[i][0];
                    for c in 0..c_out {
                        uf.union(elem(i, c), elem(j, c));
                    }
                }
                Role::Add => {
                    for &j in &inputs[i] {
                        for c in 0..c_out {
                            uf.union(elem(i, c), elem(j, c));
                        }
                    }
                }
                Role::Concat => {
                    let mut off = 0;
                    for &j in &inputs[i] {
                        let cj = channels(&shapes[j]);
                        for c in 0..cj {
                            uf.union(elem(i, off + c), elem(j, c));
                        }
                        off += cj;
                    }
                }
                Role::Input | Role::Producer | Role::Grouped | Role::Flatten => {}
            }
        }
        let (elem_unit, n_units) = uf.dense_ids();
        let unit_of: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                (0..channels(&shapes[i]))
                    .map(|c| elem_unit[elem(i, c)])
                    .collect()
            })
            .collect();

        // Flattened features derive from their channel's unit.
        let mut sources: Vec<Vec<usize>> = vec![Vec::new(); n_units];
        for i in 0..n {
            if roles[i] == Role::Flatten {
                let j = inputs[i][0];
                let b = block(&shapes[j]);
                for (f, &u) in unit_of[i].iter().enumerate() {
                    let src = unit_of[j][f / b];
                    if !sources[u].contains(&src) {
                        sources[u].push(src);
                    }
                }
            }
        }

        // Structural pins.
        let mut pinned: Vec<Option<String>> = vec![None; n_units];
        let mut pin = |units: &[usize], why: &str| {
            for &u in units {
                if pinned[u].is_none() {
                    pinned[u] = Some(why.to_string());
                }
            }
        };
        for i in 0..n {
            let name = &graph.nodes[i].name;
            match roles[i] {
                Role::Input => pin(&unit_of[i], "network input"),
                Role::Grouped => {
                    let why = format!("grouped convolution '{name}'");
                    pin(&unit_of[i], &why);
                    pin(&unit_of[inputs[i][0]], &why);
                }
                _ => {}
            }
        }
        if let Some(last) = n.checked_sub(1) {
            pin(&unit_of[last], "model output");
        }

        // Groups: units sharing a segment of some node's output.
        let cuts = segment_cuts(&roles, &inputs, &shapes);
        let mut guf = UnionFind::new(n_units);
        for i in 0..n {
            for w in cuts[i].windows(2) {
                for c in w[0] + 1..w[1] {
                    guf.union(unit_of[i][w[0]], unit_of[i][c]);
                }
            }
        }
        // Number groups by first appearance in node/channel order.
        let mut group_of_root = vec![usize::MAX; n_units];
        let mut unit_group = vec![usize::MAX; n_units];
        let mut n_groups = 0;
        for units in &unit_of {
            for &u in units {
                let r = guf.find(u);
                if group_of_root[r] == usize::MAX {
                    group_of_root[r] = n_groups;
                    n_groups += 1;
                }
                unit_group[u] = group_of_root[r];
            }
        }
        let mut groups: Vec<ChannelGroup> = (0..n_groups)
            .map(|id| ChannelGroup {
                id,
                size: 0,
                producers: vec![],
                gates: vec![],
                passthrough: vec![],
                consumers: vec![],
                derived_from: vec![],
                pinned: None,
            })
            .collect();
        for u in 0..n_units {
            let g = &mut groups[unit_group[u]];
            g.size += 1;
            if g.pinned.is_none() {
                g.pinned.clone_from(&pinned[u]);
            }
            for &s in &sources[u] {
                let sg = unit_group[s];
                if !g.derived_from.contains(&sg) {
                    g.derived_from.push(sg);
                }
            }
        }
        let touched = |i: usize| -> Vec<usize> {
            let mut gs: Vec<usize> = unit_of[i].iter().map(|&u| unit_group[u]).collect();
            gs.sort_unstable();
            gs.dedup();
            gs
        };
        for (i, node) in graph.nodes.iter().enumerate() {
            let member = Member {
                node: node.name.clone(),
                op: node.layer.kind().to_string(),
            };
            for g in touched(i) {
                let grp = &mut groups[g];
                match roles[i] {
                    Role::Input | Role::Producer | Role::Grouped | Role::Flatten => {
                        grp.producers.push(member.clone())
                    }
                    Role::Gate => grp.gates.push(member.clone()),
                    _ => grp.passthrough.push(member.clone()),
                }
            }
            let how = inputs[i]
                .first()
                .and_then(|&j| describe(&node.layer).consumer_kind(&node.layer, &shapes[j]));
            if let Some(how) = how {
                for g in touched(inputs[i][0]) {
                    groups[g].consumers.push(Consumer {
                        node: node.name.clone(),
                        how: how.clone(),
                    });
                }
            }
        }
        Ok(Self {
            shapes,
            inputs,
            roles,
            unit_of,
            n_units,
            sources,
            pinned,
            unit_group,
            groups,
        })
    }

    /// Units of group `g`, in order of first appearance.
    pub(crate) fn group_units(&self, g: usize) -> Vec<usize> {
        (0..self.n_units)
            .filter(|&u| self.unit_group[u] == g)
            .collect()
    }
}

/// Segment boundaries of every node's output (sorted, from 0 to C): a fresh
/// output is one segment; channelwise layers keep their input's segments;
/// sums refine; concatenations append.
fn segment_cuts(roles: &[Role], inputs: &[Vec<usize>], shapes: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut cuts: Vec<Vec<usize>> = Vec::with_capacity(roles.len());
    for i in 0..roles.len() {
        let c = channels(&shapes[i]);
        let cut = match roles[i] {
            Role::Passthrough | Role::Gate | Role::Depthwise => cuts[inputs[i][0]].clone(),
            Role::Add => {
                let mut all: Vec<usize> = inputs[i].iter().flat_map(|&j| cuts[j].clone()).collect();
                all.sort_unstable();
                all.dedup();
                all
            }
            Role::Concat => {
                let mut all = vec![0];
                let mut off = 0;
                for &j in &inputs[i] {
                    all.extend(cuts[j].iter().skip(1).map(|&x| x + off));
                    off += channels(&shapes[j]);
                }
                all
            }
            Role::Input | Role::Producer | Role::Grouped | Role::Flatten => vec![0, c],
        };
        cuts.push(cut);
    }
    cuts
}

/// Finds every channel group of `graph`: the sets of channels (and
/// flattened features) that must be removed together, with their
/// producers, gates, passthrough members and consumers.
pub fn analyze(graph: &Graph) -> Result<Vec<ChannelGroup>> {
    Ok(Analysis::new(graph)?.groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_find_numbers_classes_by_first_appearance() {
        let mut uf = UnionFind::new(5);
        uf.union(3, 1);
        uf.union(4, 0);
        let (ids, n) = uf.dense_ids();
        assert_eq!(n, 3);
        assert_eq!(ids, vec![0, 1, 2, 1, 0]);
    }

    #[test]
    fn segments_follow_concat_and_refine_at_sums() {
        use Role::*;
        let roles = [
            Input,
            Producer,
            Producer,
            Concat,
            Passthrough,
            Producer,
            Add,
        ];
        let inputs = vec![
            vec![],
            vec![0],
            vec![0],
            vec![1, 2],
            vec![3],
            vec![0],
            vec![4, 5],
        ];
        let shapes = vec![
            vec![1, 4, 4],
            vec![2, 4, 4],
            vec![3, 4, 4],
            vec![5, 4, 4],
            vec![5, 4, 4],
            vec![5, 4, 4],
            vec![5, 4, 4],
        ];
        let cuts = segment_cuts(&roles, &inputs, &shapes);
        assert_eq!(cuts[3], vec![0, 2, 5]);
        assert_eq!(cuts[4], vec![0, 2, 5]);
        assert_eq!(cuts[6], vec![0, 2, 5]);
        assert_eq!(cuts[5], vec![0, 5]);
    }
}
