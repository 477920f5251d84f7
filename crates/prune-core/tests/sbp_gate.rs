//! The SBP gate op on the tape is the kernel crate's CPU reference: same θ, same
//! gradients; its noise streams differ between gates and between steps.

use prune_core::gradcheck::{check_gradients, GradcheckConfig};
use prune_core::sbp::{backward, forward, sbp_gate_eval, sbp_gate_train, test_time_scale};
use prune_core::sbp::{NoiseMode, NoiseStream, SbpShape};
use prune_core::{Tape, Tensor};

fn inputs() -> (Tensor, Tensor, Tensor) {
    let x: Vec<f32> = (0..3 * 4 * 5)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect();
    (
        Tensor::from_vec([3, 4, 5], x).expect("x"),
        Tensor::from_vec([4], vec![-0.5, -12.0, -2.0, 0.3]).expect("mu"),
        Tensor::from_vec([4], vec![-1.0, 0.5, 0.0, -2.0]).expect("ls"),
    )
}

#[test]
fn gate_op_is_the_kernel_cpu_reference() {
    let (x, mu, ls) = inputs();
    let shape = SbpShape {
        rows: 3,
        channels: 4,
        inner: 5,
    };
    for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
        let stream = NoiseStream::new(11, 3, 42);
        let mut tape = Tape::new();
        let (xv, mv, lv) = (tape.param(&x), tape.param(&mu), tape.param(&ls));
        let y = sbp_gate_train(&mut tape, xv, mv, lv, stream, mode).expect("gate");
        let (y_ref, _) =
            forward(x.data(), &shape, mu.data(), ls.data(), stream, mode).expect("ref");
        assert_eq!(tape.value(y).expect("y").data(), &y_ref[..]);
        let loss = tape.sum_all(y).expect("sum");
        let g = tape.backward(loss).expect("backward");
        let ones = vec![1.0f32; x.numel()];
        let r = backward(&ones, x.data(), &shape, mu.data(), ls.data(), stream, mode).expect("ref");
        assert_eq!(g.get(xv).expect("dx").data(), &r.dx[..]);
        for (got, want) in g.get(mv).expect("dmu").data().iter().zip(&r.dmu) {
            assert!(
                (f64::from(*got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
        for (got, want) in g.get(lv).expect("dls").data().iter().zip(&r.dlog_sigma) {
            assert!(
                (f64::from(*got) - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }
}

#[test]
fn noise_streams_differ_between_gates_and_steps() {
    let (x, mu, ls) = inputs();
    let y = |stream: NoiseStream| {
        let mut tape = Tape::no_grad();
        let (xv, mv, lv) = (
            tape.constant(x.clone()),
            tape.constant(mu.clone()),
            tape.constant(ls.clone()),
        );
        let y = sbp_gate_train(&mut tape, xv, mv, lv, stream, NoiseMode::PerChannel).expect("gate");
        tape.take_value(y).expect("y")
    };
    let base = y(NoiseStream::new(7, 1, 5));
    assert_eq!(base, y(NoiseStream::new(7, 1, 5)));
    assert_ne!(base, y(NoiseStream::new(7, 2, 5)), "two gates share noise");
    assert_ne!(
        base,
        y(NoiseStream::new(7, 1, 6)),
        "a step replays another's noise"
    );
    assert_ne!(base, y(NoiseStream::new(8, 1, 5)));
}

#[test]
fn gate_gradients_match_finite_differences_and_eval_uses_the_test_time_scale() {
    let (x, mu, ls) = inputs();
    let cfg = GradcheckConfig {
        eps: 1e-3,
        ..Default::default()
    };
    for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
        let r = check_gradients(
            &[x.clone(), mu.clone(), ls.clone()],
            |tape, v| sbp_gate_train(tape, v[0], v[1], v[2], NoiseStream::new(3, 0, 1), mode),
            cfg,
        )
        .expect("gradcheck");
        assert!(r.passed, "{mode:?}: {}", r.worst);
    }
    let mut tape = Tape::no_grad();
    let (xv, mv, lv) = (
        tape.constant(x.clone()),
        tape.constant(mu.clone()),
        tape.constant(ls.clone()),
    );
    let y = sbp_gate_eval(&mut tape, xv, mv, lv).expect("eval");
    let y = tape.take_value(y).expect("y");
    for (k, (&yv, &xv)) in y.data().iter().zip(x.data()).enumerate() {
        let c = (k / 5) % 4;
        let s = test_time_scale(f64::from(mu.data()[c]), f64::from(ls.data()[c])) as f32;
        assert_eq!(yv, xv * s);
    }
}
