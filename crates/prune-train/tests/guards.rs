//! What training refuses before it starts: degenerate settings, a resume
//! that does not match its checkpoint (or has none), and steps that cannot
//! fit in memory.

use prune_data::{Dataset, DatasetKind, Split};
use prune_graph::{zoo, Model};
use prune_train::memory::{check_step_memory, parse_mem_available, step_activation_bytes};
use prune_train::{fit, OptimizerKind, RunFiles, TrainConfig, TrainError};

fn synthetic(n: usize) -> Dataset {
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i * 31 % 251) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::from_bytes(DatasetKind::Mnist, Split::Train, &pixels, labels).expect("dataset")
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 16,
        lr: 1e-3,
        optimizer: OptimizerKind::adam(),
        schedule: Default::default(),
        seed: 3,
        augment: false,
        max_batches: Some(2),
        progress: false,
    }
}

fn model(name: &str) -> Model {
    Model::init(zoo::build(name, &[1, 28, 28], 10).expect("zoo"), 1).expect("init")
}

fn fit_err(cfg: &TrainConfig) -> String {
    let (train, test) = (synthetic(64), synthetic(16));
    let mut m = model("lenet-300-100");
    fit(&mut m, &train, &test, cfg, None, RunFiles::default())
        .expect_err("degenerate setting accepted")
        .to_string()
}

#[test]
fn degenerate_settings_are_rejected_by_name() {
    let mut c = config();
    c.epochs = 0;
    assert!(
        fit_err(&c).contains("epochs must be at least 1"),
        "{}",
        fit_err(&c)
    );
    let mut c = config();
    c.max_batches = Some(0);
    assert!(fit_err(&c).contains("max batches"), "{}", fit_err(&c));
    for lr in [0.0, -1.0, f32::NAN] {
        let mut c = config();
        c.lr = lr;
        assert!(fit_err(&c).contains("learning rate"), "{}", fit_err(&c));
    }
    let mut c = config();
    c.optimizer = OptimizerKind::Adam {
        beta1: 2.0,
        beta2: 0.999,
        weight_decay: 0.0,
    };
    assert!(fit_err(&c).contains("beta1"), "{}", fit_err(&c));
    let mut c = config();
    c.optimizer = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        weight_decay: -10.0,
    };
    assert!(fit_err(&c).contains("weight decay"), "{}", fit_err(&c));
    let mut c = config();
    c.optimizer = OptimizerKind::Sgd {
        momentum: 1.5,
        nesterov: false,
        weight_decay: 0.0,
    };
    assert!(fit_err(&c).contains("momentum"), "{}", fit_err(&c));
    // An empty training set trains nothing.
    let mut m = model("lenet-300-100");
    let e = fit(
        &mut m,
        &synthetic(0),
        &synthetic(4),
        &config(),
        None,
        RunFiles::default(),
    )
    .expect_err("empty training set accepted");
    assert!(e.to_string().contains("empty"), "{e}");
}

#[test]
fn resume_without_a_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let (train, test) = (synthetic(32), synthetic(8));
    let mut m = model("lenet-300-100");
    let files = RunFiles {
        dir: Some(dir.path()),
        resume: true,
    };
    let e = fit(&mut m, &train, &test, &config(), None, files).expect_err("resumed nothing");
    assert!(
        matches!(&e, TrainError::Resume { field, .. } if field == "--resume"),
        "{e}"
    );
    assert!(e.to_string().contains("no checkpoint"), "{e}");
}

#[test]
fn resume_checks_the_command_line_against_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (train, test) = (synthetic(64), synthetic(16));
    let first = RunFiles {
        dir: Some(dir.path()),
        resume: false,
    };
    let again = RunFiles {
        dir: Some(dir.path()),
        resume: true,
    };
    fit(
        &mut model("lenet-300-100"),
        &train,
        &test,
        &config(),
        None,
        first,
    )
    .expect("first run");

    let field_of = |m: &mut Model, cfg: &TrainConfig, train: &Dataset| -> String {
        match fit(m, train, &test, cfg, None, again) {
            Err(TrainError::Resume { field, reason, .. }) => format!("{field} {reason}"),
            other => panic!(
                "expected a resume error, got {:?}",
                other.map(|s| s.history)
            ),
        }
    };
    let mut c = config();
    c.lr = 0.01;
    assert!(field_of(&mut model("lenet-300-100"), &c, &train).starts_with("--lr"));
    let mut c = config();
    c.batch_size = 8;
    assert!(field_of(&mut model("lenet-300-100"), &c, &train).starts_with("--batch-size"));
    let mut c = config();
    c.seed = 9;
    assert!(field_of(&mut model("lenet-300-100"), &c, &train).starts_with("--seed"));
    let m = field_of(&mut model("lenet5"), &config(), &train);
    assert!(m.starts_with("--model") && m.contains("lenet5"), "{m}");
    let m = field_of(&mut model("lenet-300-100"), &config(), &synthetic(48));
    assert!(m.contains("--subset") && m.contains("48"), "{m}");
    let mut fashion = synthetic(64);
    fashion.kind = DatasetKind::FashionMnist;
    let m = field_of(&mut model("lenet-300-100"), &config(), &fashion);
    assert!(m.starts_with("--dataset"), "{m}");
    // The same settings continue, and epochs may grow.
    let mut c = config();
    c.epochs = 2;
    let mut m = model("lenet-300-100");
    let s = fit(&mut m, &train, &test, &c, None, again).expect("resume with more epochs");
    assert_eq!(s.history.len(), 2);
    // ... but not shrink below the run's own count.
    let m = field_of(&mut model("lenet-300-100"), &config(), &train);
    assert!(m.starts_with("--epochs"), "{m}");
}

#[test]
fn activation_memory_is_estimated_from_the_ir_and_refused_past_the_limit() {
    let g = zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo");
    let one = step_activation_bytes(&g, 1).expect("estimate");
    // Every node's output, values and gradients: at least twice the
    // per-example activations (conv1's 20x24x24 alone is 11,520 values).
    assert!(one >= 2 * 4 * (784 + 11_520), "{one}");
    assert_eq!(step_activation_bytes(&g, 100).expect("estimate"), 100 * one);
    check_step_memory(&g, 100, Some(100 * one)).expect("fits exactly");
    check_step_memory(&g, 100, None).expect("unknown memory lets it through");
    let e = check_step_memory(&g, 60_000, Some(8 << 30))
        .expect_err("60,000 images of LeNet5 in 8 GiB")
        .to_string();
    assert!(
        e.contains("batch size 60000") && e.contains("GiB") && e.contains("8.0 GiB"),
        "{e}"
    );
    let info = "MemTotal:       24000000 kB\nMemFree: 1 kB\nMemAvailable:   1048576 kB\n";
    assert_eq!(parse_mem_available(info), Some(1 << 30));
    assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
}

#[test]
#[cfg(target_os = "linux")]
fn a_step_that_cannot_fit_in_available_memory_is_refused_before_training() {
    let avail = prune_train::memory::available_memory().expect("/proc/meminfo");
    let g = zoo::build("resnet56", &[1, 28, 28], 10).expect("zoo");
    let per_example = step_activation_bytes(&g, 1).expect("estimate");
    // Twice what is available now: other processes may free memory meanwhile.
    let n = (2 * avail / per_example + 1) as usize;
    assert!(n < 4_000_000, "test set would be too large: {n}");
    // Dataset of n zero images: the batch is capped by the set size.
    let train = Dataset::from_bytes(
        DatasetKind::Mnist,
        Split::Train,
        &vec![0u8; n * 784],
        vec![0u8; n],
    )
    .expect("dataset");
    let mut cfg = config();
    cfg.batch_size = 1_000_000;
    let mut m = Model::init(g, 1).expect("init");
    let e = fit(
        &mut m,
        &train,
        &synthetic(4),
        &cfg,
        None,
        RunFiles::default(),
    )
    .expect_err("an impossible batch started");
    assert!(matches!(e, TrainError::Memory(_)), "{e}");
}
