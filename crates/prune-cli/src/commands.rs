//! What each subcommand does; the work itself lives in the `prune-nn` crate.

use crate::args::*;
use prune_nn::outputs::{check_output_dir, record_dataset, record_dataset_tree, RunLock};
use prune_nn::prune::{Method, PruneConfig};
use prune_nn::run::{load_data, run_dataset, train_dense_on};
use prune_nn::{Error, Result};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Graph(a) => graph(a),
        Command::Compile(a) => compile(a),
        Command::Prune(a) => prune(a),
        Command::Import(a) => crate::onnx::import(a),
        Command::Export(a) => crate::onnx::export(a),
        Command::Demo(a) => crate::demo::demo(a),
        Command::Bench(a) => crate::bench::run(a),
        Command::Chart(a) => crate::chart::run(a),
    }
}

fn data(d: &DataArgs) -> Result<(prune_nn::data::Dataset, prune_nn::data::Dataset)> {
    if d.subset == Some(0) {
        return Err(Error::Usage(
            "--subset must be at least 1 (0 trains on nothing)".into(),
        ));
    }
    let (mut train, test, dir) = load_data(&d.dataset, d.data.as_deref())?;
    if let Some(n) = d.subset {
        train = train.subset(n);
    }
    let test = match d.test_subset {
        Some(n) => test.subset(n),
        None => test,
    };
    eprintln!(
        "{}: {} training and {} test examples from {}",
        d.dataset,
        train.len(),
        test.len(),
        dir.display()
    );
    Ok((train, test))
}

fn train(a: TrainArgs) -> Result<()> {
    let device = crate::device::open(a.device)?;
    if !a.resume {
        check_output_dir(&a.out, &[], a.force)?;
    }
    let optimizer = match a.optimizer {
        Optim::Adam => prune_nn::train::OptimizerKind::Adam {
            beta1: a.beta1,
            beta2: 0.999,
            weight_decay: a.weight_decay,
        },
        Optim::Sgd => prune_nn::train::OptimizerKind::Sgd {
            momentum: a.momentum,
            nesterov: false,
            weight_decay: a.weight_decay,
        },
    };
    let schedule = crate::schedule_args::build(&a.schedule, a.epochs)?;
    let cfg = prune_nn::train::TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        optimizer,
        schedule,
        seed: a.seed,
        augment: a.augment,
        max_batches: a.max_batches,
        progress: true,
    };
    cfg.validate()?;
    let (train, test) = data(&a.data)?;
    let _lock = RunLock::acquire(&a.out)?;
    let (_, report) = train_dense_on(device, &a.model, &train, &test, &cfg, &a.out, a.resume)?;
    println!(
        "{}: test accuracy {:.4}, {:.0} training images/s, {} params, {} FLOPs; wrote {}",
        report.model,
        report.test_accuracy,
        report.train_images_per_sec,
        report.params,
        report.flops,
        a.out.display()
    );
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let device = crate::device::open(a.device)?;
    let mut model = prune_nn::graph::Model::load(&prune_nn::outputs::model_dir(&a.model))?;
    prune_nn::train::model_to(&mut model, device)?;
    let dataset = match a.dataset.or_else(|| run_dataset(&a.model)) {
        Some(d) => d,
        None => {
            return Err(Error::Usage(format!(
                "{}: no report.json names the dataset; pass --dataset",
                a.model.display()
            )))
        }
    };
    let (_, test, _) = load_data(&dataset, a.data.as_deref())?;
    let r = prune_nn::evaluate(&model, &test)?;
    println!(
        "{}: test accuracy {:.4} (loss {:.4}, {} examples)",
        dataset, r.accuracy, r.loss, r.examples
    );
    Ok(())
}

fn graph(a: GraphArgs) -> Result<()> {
    let model = prune_nn::graph::Model::load(&a.model)?;
    print!("{}", prune_nn::describe(&model)?);
    Ok(())
}

fn compile(a: CompileArgs) -> Result<()> {
    let device = crate::device::open(a.device)?;
    check_output_dir(&a.out, &[&a.model], a.force)?;
    let model = prune_nn::graph::Model::load(&a.model)?;
    let masks = prune_nn::reg::Masks::load_json(&a.masks)?;
    let _lock = RunLock::acquire(&a.out)?;
    let compiled = prune_nn::compile_masks(&model, &masks, a.fold_bn, &a.out, device)?;
    let dataset = run_dataset(&a.model).or_else(|| a.masks.parent().and_then(run_dataset));
    if let Some(d) = dataset {
        record_dataset(&a.out, &d)?;
    }
    println!(
        "compiled {}: FLOPs {} -> {}, params {} -> {}, verified (max rel. error {:.2e}); wrote {}\n{}",
        a.model.display(),
        compiled.flops_before,
        compiled.flops_after,
        compiled.params_before,
        compiled.params_after,
        compiled.verify_max_rel_error.unwrap_or(f64::NAN),
        a.out.display(),
        compiled.to_table()
    );
    Ok(())
}

fn prune(a: PruneArgs) -> Result<()> {
    let device = crate::device::open(a.device)?;
    let method = match a.method {
        MethodArg::Sbp => Method::Sbp,
        MethodArg::Polarization => Method::Polarization,
        MethodArg::Slimming => Method::Slimming,
    };
    check_output_dir(&a.out, &[&a.model], a.force)?;
    let mut dense = prune_nn::graph::Model::load(&a.model)?;
    prune_nn::train::model_to(&mut dense, device)?;
    let mut cfg = PruneConfig::paper_defaults(method);
    match a.optimizer {
        Some(Optim::Sgd) => {
            cfg.optimizer = prune_nn::train::OptimizerKind::Sgd {
                momentum: a.momentum,
                nesterov: false,
                weight_decay: a.weight_decay,
            }
        }
        Some(Optim::Adam) => {
            cfg.optimizer = prune_nn::train::OptimizerKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                weight_decay: a.weight_decay,
            }
        }
        None => {}
    }
    cfg.epochs = a.epochs;
    cfg.finetune_epochs = a.finetune_epochs;
    cfg.batch_size = a.batch_size;
    cfg.lr = a.lr;
    cfg.finetune_lr = a.finetune_lr;
    if let (Some(b1), prune_nn::train::OptimizerKind::Adam { beta1, .. }) =
        (a.beta1, &mut cfg.optimizer)
    {
        *beta1 = b1;
    }
    cfg.sbp_lr_mult = a.sbp_lr_mult;
    cfg.lambda = a.lambda;
    cfg.t = a.t;
    cfg.upper = a.a;
    cfg.global_threshold = a.global_threshold;
    cfg.slim_lambda = a.slim_lambda;
    cfg.percent = a.percent;
    cfg.target_flops = a.target_flops;
    cfg.seed = a.seed;
    cfg.max_batches = a.max_batches;
    cfg.progress = true;
    cfg.schedule = crate::schedule_args::build(&a.schedule, a.epochs)?;
    cfg.finetune_schedule = crate::schedule_args::from_lists(
        &a.finetune_milestones,
        &a.finetune_gammas,
        None,
        a.finetune_epochs,
        "finetune-",
    )?;
    cfg.sbp_per_example = a.sbp_per_example;
    cfg.sbp_kl_weights = a.sbp_kl_weights.clone();
    cfg.resume = a.resume;
    cfg.speed_repeats = a.speed_repeats;
    cfg.validate()?;
    let (train, test) = data(&a.data)?;
    let _lock = RunLock::acquire(&a.out)?;
    let pruned = prune_nn::prune::prune(&dense, &train, &test, &cfg, &a.out)?;
    record_dataset_tree(&a.out, &a.data.dataset)?;
    println!("{}", prune_nn::report::render_markdown(&pruned.report));
    if let Some(warning) = prune_nn::report::target_warning(&pruned.report) {
        eprintln!("warning: {warning}");
    }
    if let (MethodArg::Polarization, Some(_)) = (a.method, a.target_flops) {
        let search: serde_json::Value = prune_nn::run::read_json(&a.out.join("search.json"))?;
        if let Some(v) = search.get("verdict").and_then(|v| v.as_str()) {
            println!("{v}");
        }
    }
    Ok(())
}
