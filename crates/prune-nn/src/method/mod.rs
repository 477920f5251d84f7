//! The pruning methods behind one interface.
//!
//! A [`PruningMethod`] is everything the pipeline ([`crate::prune::prune`])
//! needs from a method:
//!
//! * the paper's optimizer default;
//! * the gates it adds to a dense model (SBP noise gates, or scale gates γ);
//! * the regularizer of sparse training;
//! * its pruning rule, `Masks = rule(model)` (also recorded after every
//!   epoch in `kept.jsonl`), and how a FLOPs target chooses masks;
//! * the sparse stage itself (train once; polarization with a FLOPs target
//!   searches λ and t instead);
//! * the histogram its users read (γ, or log₁₀ SNR).
//!
//! [`Method`] names a method in configurations, reports and on the command
//! line; [`Method::build`] gives its implementation for a run's settings:
//! [`sbp::Sbp`], [`polarization::Polarization`], [`slimming::Slimming`].

pub mod polarization;
pub mod sbp;
mod search;
pub mod slimming;

use crate::error::{Error, Result};
use crate::prune::PruneConfig;
use prune_compiler::{compile, CompileOptions};
use prune_data::Dataset;
use prune_graph::Model;
use prune_reg::method::to_channel_masks;
use prune_reg::Masks;
use prune_train::{fit, OptimizerKind, Regularizer, RunFiles};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The name of a pruning method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Sbp,
    Polarization,
    Slimming,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sbp" => Ok(Method::Sbp),
            "polarization" => Ok(Method::Polarization),
            "slimming" => Ok(Method::Slimming),
            other => Err(Error::Usage(format!(
                "unknown method '{other}': expected sbp, polarization or slimming"
            ))),
        }
    }
}

impl Method {
    /// The method's implementation with the settings of `cfg` (errors on
    /// settings the method cannot use, e.g. a negative λ).
    pub fn build(self, cfg: &PruneConfig) -> Result<Box<dyn PruningMethod + '_>> {
        Ok(match self {
            Method::Sbp => Box::new(sbp::Sbp::new(cfg)),
            Method::Polarization => {
                Box::new(polarization::Polarization::new(cfg, cfg.lambda, cfg.t)?)
            }
            Method::Slimming => Box::new(slimming::Slimming::new(cfg)),
        })
    }

    /// The optimizer of the method's paper.
    pub fn paper_optimizer(self) -> OptimizerKind {
        match self {
            Method::Sbp => sbp::Sbp::paper_optimizer(),
            Method::Polarization | Method::Slimming => OptimizerKind::adam(),
        }
    }
}

/// What a sparse stage needs besides the method: the dense model, the data,
/// the run's settings and output directory, and the dense FLOPs.
pub struct SparseRun<'a> {
    pub dense: &'a Model,
    pub train: &'a Dataset,
    pub test: &'a Dataset,
    pub cfg: &'a PruneConfig,
    pub out: &'a Path,
    pub flops_before: u64,
}

/// The result of a sparse stage.
pub struct Sparse {
    /// The gated model after sparse training.
    pub model: Model,
    /// Its test accuracy (eval mode).
    pub accuracy: f64,
    /// The masks chosen for it.
    pub masks: Masks,
    /// A sentence for `report.md` (the FLOPs search's verdict), if any.
    pub verdict: Option<String>,
}

/// Per-layer values of a method's histogram (`histograms.svg`).
pub struct Histograms {
    pub title: &'static str,
    pub x_label: &'static str,
    /// What the threshold line marks ("SNR = 1", "threshold").
    pub threshold_label: &'static str,
    /// The rule's threshold in x-axis units when it is the same for every
    /// layer (SBP: log₁₀ SNR = 0); `None` draws it where the masks cut each
    /// layer.
    pub threshold: Option<f64>,
    /// `(gate node, one value per unit)`.
    pub layers: Vec<(String, Vec<f32>)>,
}

/// A pruning method (see the module docs).
pub trait PruningMethod: Sync {
    /// The dense model with the method's gates added, ready for sparse
    /// training.
    fn add_gates(&self, dense: &Model) -> Result<Model>;

    /// The regularizer of sparse training.
    fn regularizer(&self) -> &dyn Regularizer;

    /// The pruning rule: which units a sparse model keeps.
    fn rule(&self, sparse: &Model) -> prune_reg::Result<Masks>;

    /// The masks of the run: the rule, unless the method meets a FLOPs
    /// target by choosing among masks (`run.cfg.target_flops`).
    fn choose_masks(&self, sparse: &Model, _run: &SparseRun<'_>) -> Result<Masks> {
        Ok(self.rule(sparse)?)
    }

    /// The sparse stage: by default one sparse training into `sparse/`,
    /// then [`PruningMethod::choose_masks`].
    fn sparsify(&self, run: &SparseRun<'_>) -> Result<Sparse> {
        train_once(self, run)
    }

    /// The values plotted per gate layer.
    fn histograms(&self, model: &Model) -> Result<Histograms>;
}

/// Adds `method`'s gates to the dense model and trains with its regularizer
/// (recording its rule after every epoch in `dir/kept.jsonl`) on the dense
/// model's device; saves the sparse model in `dir`. Returns it (on the host)
/// with its test accuracy.
pub fn train_sparse<M: PruningMethod + ?Sized>(
    method: &M,
    run: &SparseRun<'_>,
    dir: &Path,
) -> Result<(Model, f64)> {
    let cfg = run.cfg;
    // Training runs on the dense model's device; the gates are added to a host copy
    // (their initial values are made on the host) and the gated model moved over.
    let device = prune_train::model_device(run.dense);
    let mut sparse = method.add_gates(&prune_train::host_model(run.dense)?)?;
    prune_train::model_to(&mut sparse, device)?;
    let rule: crate::trajectory::Rule<'_> = Box::new(|m: &Model| method.rule(m));
    let tracked =
        crate::trajectory::tracked(method.regularizer(), rule, cfg, run.train.len(), dir)?;
    let summary = fit(
        &mut sparse,
        run.train,
        run.test,
        &cfg.train_config(cfg.epochs, cfg.lr, &cfg.schedule),
        Some(&tracked),
        RunFiles {
            dir: Some(dir),
            resume: cfg.resume,
        },
    )?;
    // The rule, the compiler and the histograms read host values: the trained model
    // comes back once, at the end of the stage.
    let sparse = prune_train::host_model(&sparse)?;
    sparse.save(dir)?;
    Ok((sparse, summary.test_accuracy))
}

/// The default sparse stage: [`train_sparse`] into `sparse/`, then the
/// method's masks.
pub fn train_once<M: PruningMethod + ?Sized>(method: &M, run: &SparseRun<'_>) -> Result<Sparse> {
    let (model, accuracy) = train_sparse(method, run, &run.out.join("sparse"))?;
    let masks = method.choose_masks(&model, run)?;
    Ok(Sparse {
        model,
        accuracy,
        masks,
        verdict: None,
    })
}

/// FLOPs of `model` compiled under `masks` (no verification).
pub(crate) fn compiled_flops(model: &Model, masks: &Masks) -> Result<u64> {
    let opts = CompileOptions {
        verify: false,
        ..Default::default()
    };
    let c = compile(model, &to_channel_masks(masks), &opts)?;
    Ok(c.model.cost()?.flops)
}

/// The scale factors γ of every scale gate, per layer (the histogram of the
/// γ methods).
pub(crate) fn gamma_histograms(model: &Model) -> Result<Histograms> {
    let mut layers = Vec::new();
    for g in prune_reg::method::gamma_gates(&model.graph) {
        let v = model.params.get(&format!("{g}.weight"))?.data().to_vec();
        layers.push((g, v));
    }
    Ok(Histograms {
        title: "Scale factors per layer",
        x_label: "gamma",
        threshold_label: "threshold",
        threshold: None,
        layers,
    })
}
