//! The three methods as training objectives ([`prune_graph::Regularizer`])
//! and their pruning rules (`Masks = rule(model)`, no mutation).
//!
//! * [`SbpMethod`]: SGVLB = mean cross-entropy + Σ KL / N_train; μ and log σ
//!   train at `param_lr_mult` times the network's rate and are clipped to
//!   `[PARAM_MIN, PARAM_MAX]` = [−20, 5] (the clamp of the SBP math in
//!   [`prune_core::sbp`]) after each step. Rule: keep a unit iff SNR > 1.
//! * [`PolarizationMethod`]: `λ·R(γ)` over every regularized γ with one
//!   global mean; γ clamped to [0, a] after each step. Rule: the first local
//!   minimum of the γ histogram (per layer or global).
//! * [`SlimmingMethod`]: `λ·Σ|γ|`. Rule: a global percentile of |γ|.

use super::gamma_penalty::{l1_penalty, polarization_penalty};
use super::placement::{gamma_gates, sbp_gates};
use crate::error::Result;
use crate::masks::{LayerMask, Masks};
use crate::polarization::{clamp_gammas, Polarization};
use crate::slimming::slimming_masks;
use crate::threshold::{polarization_masks, HistogramThreshold, ThresholdMode};
use prune_core::autograd::Unary;
use prune_core::sbp::{layer_stats, sbp_kl, NoiseMode, PARAM_MAX, PARAM_MIN};
use prune_core::{CoreError, Device, Tape, Tensor, Var};
use prune_graph::{ChannelMasks, GraphError, Model, ParamKind, Regularizer};
use std::collections::BTreeMap;

/// Masks keyed by gate node, as the compiler and interpreter take them.
pub fn to_channel_masks(masks: &Masks) -> ChannelMasks {
    masks
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.keep.clone()))
        .collect()
}

fn var(params: &BTreeMap<String, Var>, name: &str) -> prune_core::Result<Var> {
    params.get(name).copied().ok_or(CoreError::InvalidArgument {
        op: "regularizer",
        reason: format!("parameter {name} is not in the forward pass"),
    })
}

fn step_err(e: impl std::fmt::Display) -> GraphError {
    GraphError::Regularizer(e.to_string())
}

/// Clamps `t` to `[lo, hi]` where it lives: in place on the host, with the backend's
/// clamp on a device (nothing is copied to the host).
fn clamp_where_it_lives(t: &mut Tensor, lo: f32, hi: f32) -> prune_core::Result<()> {
    if t.device() == Device::Cpu {
        t.data_mut().iter_mut().for_each(|v| *v = v.clamp(lo, hi));
    } else {
        *t = t.backend().unary(t, Unary::Clamp(lo, hi))?;
    }
    Ok(())
}

/// Structured Bayesian Pruning.
///
/// The penalty is the KL part of the SGVLB of Neklyudov et al. (2017),
/// `E[−log p(y|x,θ)] + KL / N`, with one KL term per noise layer:
///
/// ```text
/// penalty = Σ_l w_l · Σ_units KL(μ, log σ) / N
/// ```
///
/// `w_l = 1` for every layer is the paper's SGVLB. The authors'
/// `vgglike-sbpa` script scales the KL of early layers up (10 for the first
/// two convolutions) to prune them harder; `kl_weights` gives `w_l` per SBP
/// gate in graph order (gates past the list get 1).
#[derive(Clone, Debug)]
pub struct SbpMethod {
    /// Learning-rate multiplier of μ and log σ (10 for deep nets).
    pub param_lr_mult: f32,
    /// θ drawn once per minibatch (the reference implementation) or per example.
    pub noise: NoiseMode,
    /// KL weight of each SBP gate in graph order; empty: all 1.
    pub kl_weights: Vec<f32>,
}

impl SbpMethod {
    /// The KL weight of the `i`-th gate.
    pub fn kl_weight(&self, i: usize) -> f32 {
        self.kl_weights.get(i).copied().unwrap_or(1.0)
    }
}

impl Default for SbpMethod {
    fn default() -> Self {
        Self {
            param_lr_mult: 1.0,
            noise: NoiseMode::PerChannel,
            kl_weights: Vec::new(),
        }
    }
}

impl Regularizer for SbpMethod {
    fn name(&self) -> &str {
        "sbp"
    }

    fn penalty(
        &self,
        tape: &mut Tape<'_>,
        model: &Model,
        params: &BTreeMap<String, Var>,
        n_train: usize,
    ) -> prune_core::Result<Option<Var>> {
        let inv_n = 1.0 / n_train.max(1) as f32;
        let weighted = !self.kl_weights.is_empty();
        let mut total: Option<Var> = None;
        for (i, gate) in sbp_gates(&model.graph).iter().enumerate() {
            let kl = sbp_kl(
                tape,
                var(params, &format!("{gate}.mu"))?,
                var(params, &format!("{gate}.log_sigma"))?,
            )?;
            // With weights each term is scaled on its own; without, the sum
            // is scaled once (the paper's SGVLB, in its order of operations).
            let term = if weighted {
                tape.scale(kl, self.kl_weight(i) * inv_n)?
            } else {
                kl
            };
            total = Some(match total {
                Some(t) => tape.add(t, term)?,
                None => term,
            });
        }
        match total {
            Some(t) if !weighted => Ok(Some(tape.scale(t, inv_n)?)),
            t => Ok(t),
        }
    }

    fn lr_mult(&self, _name: &str, kind: ParamKind) -> f32 {
        match kind {
            ParamKind::SbpMu | ParamKind::SbpLogSigma => self.param_lr_mult,
            _ => 1.0,
        }
    }

    fn after_step(&self, model: &mut Model) -> prune_graph::Result<()> {
        let (lo, hi) = (PARAM_MIN as f32, PARAM_MAX as f32);
        for gate in sbp_gates(&model.graph) {
            for f in ["mu", "log_sigma"] {
                let t = model.params.get_mut(&format!("{gate}.{f}"))?;
                clamp_where_it_lives(t, lo, hi).map_err(step_err)?;
            }
        }
        Ok(())
    }

    fn noise_mode(&self) -> NoiseMode {
        self.noise
    }
}

/// SBP's rule: keep units with SNR > 1, per SBP gate.
pub fn sbp_masks(model: &Model) -> Result<Masks> {
    let mut layers = Vec::new();
    for gate in sbp_gates(&model.graph) {
        let mu = model.params.get(&format!("{gate}.mu"))?;
        let ls = model.params.get(&format!("{gate}.log_sigma"))?;
        layers.push(sbp_layer_mask(&gate, mu.data(), ls.data())?);
    }
    Ok(Masks::new(layers))
}

/// The SBP decision of one layer: keep units with SNR > 1, scored by SNR; a layer whose
/// units would all be removed keeps its best unit and is flagged `forced`.
pub fn sbp_layer_mask(name: &str, mu: &[f32], log_sigma: &[f32]) -> Result<LayerMask> {
    let mismatch = || crate::RegError::LengthMismatch {
        what: "log_sigma (vs mu)",
        expected: mu.len(),
        got: log_sigma.len(),
    };
    if mu.len() != log_sigma.len() {
        return Err(mismatch());
    }
    let stats = layer_stats(mu, log_sigma).map_err(|_| mismatch())?;
    LayerMask::from_decision(name, stats.keep, stats.snr)
}

/// The γ of every scale gate as tape variables (`None` when the model has none).
fn gamma_vars(
    model: &Model,
    params: &BTreeMap<String, Var>,
) -> prune_core::Result<Option<Vec<Var>>> {
    let gates = gamma_gates(&model.graph);
    if gates.is_empty() {
        return Ok(None);
    }
    gates
        .iter()
        .map(|g| var(params, &format!("{g}.weight")))
        .collect::<prune_core::Result<_>>()
        .map(Some)
}

fn gammas(model: &Model) -> Result<Vec<(String, Vec<f32>)>> {
    gamma_gates(&model.graph)
        .into_iter()
        .map(|g| {
            let t = model.params.get(&format!("{g}.weight"))?;
            Ok((g, t.data().to_vec()))
        })
        .collect()
}

/// The polarization regularizer (Zhuang et al. 2020).
#[derive(Clone, Debug)]
pub struct PolarizationMethod {
    pub reg: Polarization,
    /// Upper bound `a` of γ.
    pub upper: f32,
}

impl Regularizer for PolarizationMethod {
    fn name(&self) -> &str {
        "polarization"
    }

    fn penalty(
        &self,
        tape: &mut Tape<'_>,
        model: &Model,
        params: &BTreeMap<String, Var>,
        _n_train: usize,
    ) -> prune_core::Result<Option<Var>> {
        gamma_vars(model, params)?
            .map(|g| polarization_penalty(tape, &g, &self.reg))
            .transpose()
    }

    fn after_step(&self, model: &mut Model) -> prune_graph::Result<()> {
        // Checks the bound; the clamp itself runs where γ lives.
        clamp_gammas(&mut [], self.upper).map_err(step_err)?;
        for g in gamma_gates(&model.graph) {
            let t = model.params.get_mut(&format!("{g}.weight"))?;
            clamp_where_it_lives(t, 0.0, self.upper).map_err(step_err)?;
        }
        Ok(())
    }
}

/// Polarization's rule: γ above the first histogram valley.
pub fn polarization_rule(
    model: &Model,
    mode: ThresholdMode,
    upper: f32,
) -> Result<(Masks, Vec<HistogramThreshold>)> {
    let g = gammas(model)?;
    let layers: Vec<(&str, &[f32])> = g.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    polarization_masks(&layers, mode, 100, upper)
}

/// Network slimming (Liu et al. 2017): L1 on γ.
#[derive(Clone, Debug)]
pub struct SlimmingMethod {
    pub lambda: f64,
}

impl Regularizer for SlimmingMethod {
    fn name(&self) -> &str {
        "slimming"
    }

    fn penalty(
        &self,
        tape: &mut Tape<'_>,
        model: &Model,
        params: &BTreeMap<String, Var>,
        _n_train: usize,
    ) -> prune_core::Result<Option<Var>> {
        gamma_vars(model, params)?
            .map(|g| l1_penalty(tape, &g, self.lambda))
            .transpose()
    }
}

/// Slimming's rule: prune the `percent`% smallest |γ| globally.
pub fn slimming_rule(model: &Model, percent: f64) -> Result<Masks> {
    let g = gammas(model)?;
    let layers: Vec<(&str, &[f32])> = g.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    slimming_masks(&layers, percent)
}
