//! What the compiler knows about each layer type, in one place.
//!
//! Every `Layer` variant has one [`LayerDesc`] implementation, found by
//! [`describe`]; the group analysis, the masks, surgery and gate folding ask
//! it instead of matching on layer types (only the two passes specific to
//! one layer type match directly: batch-norm folding and the `select` pass
//! of linear layers). It answers:
//!
//! * **coupling** ([`Role`]): how the layer's output channels relate to its
//!   input channels — new channels (convolution, linear), channel `c` ↔
//!   channel `c` (channelwise layers, gates, depthwise convolutions), a sum,
//!   a concatenation, a flatten, or pinned (grouped convolutions, `Select`);
//! * **zeros**: which output channels are exactly zero in the masked model
//!   when some input channels are (the exactness check of [`crate::masks`]);
//! * **slicing**: the layer's hyperparameters with only the kept channels,
//!   whether its parameters are sliced along input channels (axis 1) as well
//!   as output channels (axis 0), and which tensors are zeroed for masked
//!   units that stay in the tensor;
//! * **lowering**: the eval-mode form a gate takes after surgery (an SBP gate
//!   becomes a scale by `E[θ]·1[SNR > 1]`);
//! * **folding**: whether a per-channel factor `s` commutes with the layer
//!   (`f(s·x) = s·f(x)`: always for average pooling and dropout, for
//!   `s ≥ 0` only for ReLU and max pooling, repeated over each channel's
//!   block for a flatten), and whether the layer absorbs a factor on its
//!   output (rows of a weight, batch-norm γ and β) or on its input (columns
//!   of a weight).
//!
//! Adding a layer type means: the IR (`prune-graph`'s `ir`, `params`,
//! `shapes`, `interp`) plus one implementation here.

use crate::error::{CompileError, Result};
use crate::groups::{block, ConsumerKind};
use prune_core::Tensor;
use prune_graph::ir::Layer;
use prune_graph::{ParamKind, ParamStore};

/// How a layer's output channels relate to its input channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The network input.
    Input,
    /// A convolution (groups == 1) or linear layer: new output channels,
    /// reads its input channels.
    Producer,
    /// A depthwise convolution: output channel `c` reads input channel `c`.
    Depthwise,
    /// Its input and output are pinned: a grouped, non-depthwise
    /// convolution, or a feature gather.
    Grouped,
    /// SBP gate, scale or batch norm: channelwise, and its factor decides
    /// pruning.
    Gate,
    /// ReLU, pooling, dropout, global average pooling: channelwise.
    Passthrough,
    Add,
    Concat,
    Flatten,
}

/// How a per-channel factor on a layer's input moves to its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commute {
    /// `f(s·x) ≠ s·f(x)` in general.
    No,
    /// `f(s·x) = s·f(x)` when every `s_c ≥ 0` (ReLU, max pooling).
    NonNegative,
    /// `f(s·x) = s·f(x)` for every `s` (linear per channel).
    Always,
    /// A flatten: `s_c` repeats over channel `c`'s block of features.
    Repeat,
}

/// The kept channels around a node, for slicing it.
pub(crate) struct Kept<'a> {
    /// Kept output channels, ascending.
    pub out: &'a [usize],
    /// Output channels before pruning.
    pub out_total: usize,
    /// Kept channels of the (first) input, ascending.
    pub input: Option<&'a [usize]>,
    /// Whether the input keeps all its channels.
    pub input_full: bool,
}

/// What the compiler knows about one layer type (see the module docs).
/// Methods receive the layer itself for its hyperparameters.
pub(crate) trait LayerDesc: Sync {
    /// How output channels couple to input channels.
    fn role(&self, layer: &Layer) -> Role;

    /// Which of the `c_out` output channels are exactly zero in the masked
    /// model, given which channels of each input are (`inputs`, with their
    /// per-example shapes). Default: sources of new channels (input,
    /// producers, pinned layers) are never zero; channelwise layers map zero
    /// to zero.
    fn zeros(&self, layer: &Layer, inputs: &[(&[bool], &[usize])], c_out: usize) -> Vec<bool> {
        match self.role(layer) {
            Role::Input | Role::Producer | Role::Grouped => vec![false; c_out],
            _ => inputs
                .first()
                .map_or_else(|| vec![false; c_out], |(z, _)| z.to_vec()),
        }
    }

    /// The layer's hyperparameters once only `kept` channels remain.
    /// Default: unchanged (layers without channel counts).
    fn resize(&self, layer: &Layer, _node: &str, _kept: &Kept<'_>) -> Result<Layer> {
        Ok(layer.clone())
    }

    /// Whether the layer's ≥2-D parameters are sliced along input channels
    /// (axis 1) as well as output channels (axis 0).
    fn slices_input(&self, _layer: &Layer) -> bool {
        false
    }

    /// Whether a tensor of `kind` is set to zero at masked units that stay in
    /// the tensor (so the layer outputs zero there).
    fn zeroes_masked(&self, _kind: ParamKind) -> bool {
        false
    }

    /// After slicing: the eval-mode layer that replaces this one (rewriting
    /// its tensors in `params`), or `None` to keep it.
    fn lower(
        &self,
        _node: &str,
        _params: &mut ParamStore,
        _zeroed: &[bool],
    ) -> Result<Option<Layer>> {
        Ok(None)
    }

    /// How a per-channel factor on the input passes through the layer.
    fn commute(&self, _layer: &Layer) -> Commute {
        Commute::No
    }

    /// Whether a per-channel factor on the output folds into the layer's
    /// tensors: rows of `weight` and `bias` (convolution, linear) or γ and β
    /// (batch norm).
    fn absorbs_output_factor(&self, _layer: &Layer) -> bool {
        false
    }

    /// For a linear map of its input channels (convolution, linear) with a
    /// weight `[out, in/groups, ...]`: its number of groups. A factor on the
    /// input then folds into the weight's columns, and a batch norm after it
    /// folds into its rows and bias.
    fn linear_map_groups(&self, _layer: &Layer) -> Option<usize> {
        None
    }

    /// How the layer reads the channel groups of its input, for reporting.
    fn consumer_kind(&self, _layer: &Layer, _input_shape: &[usize]) -> Option<ConsumerKind> {
        None
    }

    /// The per-channel factor of a gate layer that folding moves into its
    /// neighbours (a scale gate's γ).
    fn fold_factor(&self, _node: &str, _params: &ParamStore) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }
}

/// The description of `layer`'s type.
pub(crate) fn describe(layer: &Layer) -> &'static dyn LayerDesc {
    match layer {
        Layer::Input { .. } => &InputDesc,
        Layer::Linear { .. } => &LinearDesc,
        Layer::Conv2d { .. } => &Conv2dDesc,
        Layer::BatchNorm { .. } => &BatchNormDesc,
        Layer::SbpGate { .. } => &SbpGateDesc,
        Layer::Scale { .. } => &ScaleDesc,
        Layer::Relu | Layer::Relu6 => &ActivationDesc,
        Layer::MaxPool { .. } => &MaxPoolDesc,
        Layer::AvgPool { .. } | Layer::GlobalAvgPool | Layer::Dropout { .. } => {
            &LinearPerChannelDesc
        }
        Layer::Flatten => &FlattenDesc,
        Layer::Add => &AddDesc,
        Layer::Concat => &ConcatDesc,
        Layer::Select { .. } => &SelectDesc,
    }
}

/// The coupling of a layer ([`LayerDesc::role`]).
pub(crate) fn role(layer: &Layer) -> Role {
    describe(layer).role(layer)
}

struct InputDesc;
impl LayerDesc for InputDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Input
    }
}

/// `y = x Wᵀ + b`: new output features; `W[o, i]` sliced by kept outputs
/// (rows) and kept inputs (columns).
struct LinearDesc;
impl LayerDesc for LinearDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Producer
    }
    fn resize(&self, layer: &Layer, _: &str, kept: &Kept<'_>) -> Result<Layer> {
        let Layer::Linear { bias, .. } = layer else {
            return Ok(layer.clone());
        };
        Ok(Layer::Linear {
            in_features: kept.input.map_or(0, <[usize]>::len),
            out_features: kept.out.len(),
            bias: *bias,
        })
    }
    fn slices_input(&self, _: &Layer) -> bool {
        true
    }
    fn absorbs_output_factor(&self, _: &Layer) -> bool {
        true
    }
    fn linear_map_groups(&self, _: &Layer) -> Option<usize> {
        Some(1)
    }
    fn consumer_kind(&self, _: &Layer, _: &[usize]) -> Option<ConsumerKind> {
        Some(ConsumerKind::LinearInput)
    }
}

/// 2-D convolution. `groups == 1`: a producer (weight `[out, in, kh, kw]`
/// sliced by rows and columns); `groups == in == out`: depthwise (channel
/// `c` reads channel `c`; rows only, groups shrink with the channels);
/// other groupings are pinned.
struct Conv2dDesc;
impl LayerDesc for Conv2dDesc {
    fn role(&self, layer: &Layer) -> Role {
        match layer {
            Layer::Conv2d {
                in_channels,
                out_channels,
                groups,
                ..
            } if *groups > 1 => {
                if groups == in_channels && groups == out_channels {
                    Role::Depthwise
                } else {
                    Role::Grouped
                }
            }
            _ => Role::Producer,
        }
    }
    fn zeros(&self, layer: &Layer, inputs: &[(&[bool], &[usize])], c_out: usize) -> Vec<bool> {
        // A depthwise convolution without bias maps a zero channel to zero.
        match (self.role(layer), layer, inputs.first()) {
            (Role::Depthwise, Layer::Conv2d { bias: false, .. }, Some((z, _))) => z.to_vec(),
            _ => vec![false; c_out],
        }
    }
    fn resize(&self, layer: &Layer, node: &str, kept: &Kept<'_>) -> Result<Layer> {
        let Layer::Conv2d {
            kernel,
            stride,
            padding,
            bias,
            ..
        } = layer
        else {
            return Ok(layer.clone());
        };
        let (cin, groups) = match self.role(layer) {
            Role::Grouped => {
                if kept.out.len() != kept.out_total || !kept.input_full {
                    return Err(CompileError::Unsupported {
                        node: node.into(),
                        reason: "channels of a grouped convolution cannot be removed".into(),
                    });
                }
                return Ok(layer.clone());
            }
            Role::Depthwise => (kept.out.len(), kept.out.len()),
            _ => (kept.input.map_or(0, <[usize]>::len), 1),
        };
        Ok(Layer::Conv2d {
            in_channels: cin,
            out_channels: kept.out.len(),
            kernel: *kernel,
            stride: *stride,
            padding: *padding,
            groups,
            bias: *bias,
        })
    }
    fn slices_input(&self, layer: &Layer) -> bool {
        self.role(layer) == Role::Producer
    }
    fn absorbs_output_factor(&self, _: &Layer) -> bool {
        true
    }
    fn linear_map_groups(&self, layer: &Layer) -> Option<usize> {
        match layer {
            Layer::Conv2d { groups, .. } => Some(*groups),
            _ => None,
        }
    }
    fn consumer_kind(&self, layer: &Layer, _: &[usize]) -> Option<ConsumerKind> {
        matches!(self.role(layer), Role::Producer | Role::Grouped)
            .then_some(ConsumerKind::ConvInput)
    }
}

/// Batch norm: a gate (γ decides pruning); eval mode maps 0 to
/// `β − γ·mean/√(var+ε)`, not zero, so masked units that stay get γ = β = 0.
struct BatchNormDesc;
impl LayerDesc for BatchNormDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Gate
    }
    fn zeros(&self, _: &Layer, _: &[(&[bool], &[usize])], c_out: usize) -> Vec<bool> {
        vec![false; c_out]
    }
    fn resize(&self, layer: &Layer, _: &str, kept: &Kept<'_>) -> Result<Layer> {
        let Layer::BatchNorm { eps, momentum, .. } = layer else {
            return Ok(layer.clone());
        };
        Ok(Layer::BatchNorm {
            features: kept.out.len(),
            eps: *eps,
            momentum: *momentum,
        })
    }
    fn zeroes_masked(&self, kind: ParamKind) -> bool {
        matches!(kind, ParamKind::BnGamma | ParamKind::BnBeta)
    }
    fn absorbs_output_factor(&self, _: &Layer) -> bool {
        // s·(γx̂ + β) = (sγ)x̂ + sβ.
        true
    }
}

/// The eval-mode factor of SBP units, `E[θ]·1[SNR > 1]`
/// ([`prune_core::sbp::test_time_scale`]), zero where `zeroed`.
pub(crate) fn sbp_eval_factor(mu: &[f32], log_sigma: &[f32], zeroed: &[bool]) -> Vec<f32> {
    mu.iter()
        .zip(log_sigma)
        .zip(zeroed)
        .map(|((&m, &l), &z)| {
            if z {
                0.0
            } else {
                prune_core::sbp::test_time_scale(f64::from(m), f64::from(l)) as f32
            }
        })
        .collect()
}

/// The SBP noise gate: channelwise; after slicing it becomes a scale layer
/// holding its eval-mode factor `E[θ]·1[SNR > 1]` (zero at masked units).
struct SbpGateDesc;
impl LayerDesc for SbpGateDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Gate
    }
    fn resize(&self, _: &Layer, _: &str, kept: &Kept<'_>) -> Result<Layer> {
        Ok(Layer::SbpGate {
            units: kept.out.len(),
        })
    }
    fn lower(&self, node: &str, params: &mut ParamStore, zeroed: &[bool]) -> Result<Option<Layer>> {
        let mu = params.remove(&format!("{node}.mu"));
        let ls = params.remove(&format!("{node}.log_sigma"));
        let (Some(mu), Some(ls)) = (mu, ls) else {
            return Err(CompileError::Param {
                name: format!("{node}.mu"),
                reason: "missing".into(),
            });
        };
        let s = sbp_eval_factor(mu.data(), ls.data(), zeroed);
        let units = s.len();
        params.insert(format!("{node}.weight"), Tensor::from_vec([units], s)?);
        Ok(Some(Layer::Scale { units }))
    }
}

/// A learnable per-channel scale γ: channelwise; masked units that stay get
/// γ = 0; folding moves γ into a neighbour.
struct ScaleDesc;
impl LayerDesc for ScaleDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Gate
    }
    fn resize(&self, _: &Layer, _: &str, kept: &Kept<'_>) -> Result<Layer> {
        Ok(Layer::Scale {
            units: kept.out.len(),
        })
    }
    fn zeroes_masked(&self, kind: ParamKind) -> bool {
        kind == ParamKind::ScaleGamma
    }
    fn fold_factor(&self, node: &str, params: &ParamStore) -> Result<Option<Vec<f32>>> {
        Ok(Some(params.get(&format!("{node}.weight"))?.data().to_vec()))
    }
}

/// ReLU and ReLU6: channelwise, zero to zero. `relu(s·x) = s·relu(x)` for
/// `s ≥ 0`; ReLU6 clips at 6, which a factor does not commute with.
struct ActivationDesc;
impl LayerDesc for ActivationDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Passthrough
    }
    fn commute(&self, layer: &Layer) -> Commute {
        match layer {
            Layer::Relu => Commute::NonNegative,
            _ => Commute::No,
        }
    }
}

/// Max pooling: channelwise; `max(s·x) = s·max(x)` for `s ≥ 0`.
struct MaxPoolDesc;
impl LayerDesc for MaxPoolDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Passthrough
    }
    fn commute(&self, _: &Layer) -> Commute {
        Commute::NonNegative
    }
}

/// Average pooling, global average pooling and dropout (identity in eval
/// mode): linear in each channel, so every factor commutes.
struct LinearPerChannelDesc;
impl LayerDesc for LinearPerChannelDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Passthrough
    }
    fn commute(&self, _: &Layer) -> Commute {
        Commute::Always
    }
}

/// `[C, H, W] → [C·H·W]`: feature `f` comes from channel `f / (H·W)`.
struct FlattenDesc;
impl LayerDesc for FlattenDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Flatten
    }
    fn zeros(&self, _: &Layer, inputs: &[(&[bool], &[usize])], c_out: usize) -> Vec<bool> {
        match inputs.first() {
            Some((z, shape)) => {
                let b = block(shape);
                (0..c_out)
                    .map(|f| z.get(f / b).copied().unwrap_or(false))
                    .collect()
            }
            None => vec![false; c_out],
        }
    }
    fn commute(&self, _: &Layer) -> Commute {
        Commute::Repeat
    }
    fn consumer_kind(&self, _: &Layer, input_shape: &[usize]) -> Option<ConsumerKind> {
        Some(ConsumerKind::FlattenBlock {
            block: block(input_shape),
        })
    }
}

/// Elementwise sum: channel `c` of every input ↔ channel `c` of the output;
/// zero only where every input is.
struct AddDesc;
impl LayerDesc for AddDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Add
    }
    fn zeros(&self, _: &Layer, inputs: &[(&[bool], &[usize])], c_out: usize) -> Vec<bool> {
        (0..c_out)
            .map(|k| {
                inputs
                    .iter()
                    .all(|(z, _)| z.get(k).copied().unwrap_or(false))
            })
            .collect()
    }
}

/// Concatenation along channels: output `offset_k + c` ↔ channel `c` of
/// input `k`.
struct ConcatDesc;
impl LayerDesc for ConcatDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Concat
    }
    fn zeros(&self, _: &Layer, inputs: &[(&[bool], &[usize])], _: usize) -> Vec<bool> {
        inputs.iter().flat_map(|(z, _)| z.iter().copied()).collect()
    }
}

/// A gather of individual features (what the compiler itself inserts): its
/// input and output are pinned, so a compiled model is not pruned again
/// through it.
struct SelectDesc;
impl LayerDesc for SelectDesc {
    fn role(&self, _: &Layer) -> Role {
        Role::Grouped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(i: usize, o: usize, g: usize) -> Layer {
        Layer::Conv2d {
            in_channels: i,
            out_channels: o,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            groups: g,
            bias: false,
        }
    }

    #[test]
    fn roles_of_convolutions() {
        assert_eq!(role(&conv(4, 8, 1)), Role::Producer);
        assert_eq!(role(&conv(4, 4, 4)), Role::Depthwise);
        assert_eq!(role(&conv(4, 8, 4)), Role::Grouped);
        assert_eq!(role(&conv(4, 8, 2)), Role::Grouped);
    }

    #[test]
    fn zeros_follow_each_coupling() {
        let z: &[bool] = &[true, false];
        let s: &[usize] = &[2, 1, 2];
        assert_eq!(
            describe(&Layer::Relu).zeros(&Layer::Relu, &[(z, s)], 2),
            vec![true, false]
        );
        assert_eq!(
            describe(&Layer::Flatten).zeros(&Layer::Flatten, &[(z, s)], 4),
            vec![true, true, false, false]
        );
        let other: &[bool] = &[true, true];
        assert_eq!(
            describe(&Layer::Add).zeros(&Layer::Add, &[(z, s), (other, s)], 2),
            vec![true, false]
        );
        assert_eq!(
            describe(&Layer::Concat).zeros(&Layer::Concat, &[(z, s), (other, s)], 4),
            vec![true, false, true, true]
        );
        let bn = Layer::BatchNorm {
            features: 2,
            eps: 1e-5,
            momentum: 0.1,
        };
        assert_eq!(describe(&bn).zeros(&bn, &[(z, s)], 2), vec![false, false]);
        let dw = conv(2, 2, 2);
        assert_eq!(describe(&dw).zeros(&dw, &[(z, s)], 2), vec![true, false]);
        let p = conv(2, 3, 1);
        assert_eq!(describe(&p).zeros(&p, &[(z, s)], 3), vec![false; 3]);
    }

    #[test]
    fn grouped_convolutions_refuse_to_lose_channels() {
        let g = conv(4, 8, 2);
        let out: Vec<usize> = (0..7).collect();
        let kept = Kept {
            out: &out,
            out_total: 8,
            input: None,
            input_full: true,
        };
        assert!(describe(&g).resize(&g, "g", &kept).is_err());
    }
}
