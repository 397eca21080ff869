//! The trainer on a tiny test-only network and the CI-sized task.

use std::sync::OnceLock;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use fnas_child::task::{Optimizer, ProxyTask, TaskData};
use fnas_child::train::{
    train, training_images, Classifier, TrainError, TrainOptions, TrainProgress, Trained,
};

/// conv 3x3 (stride 2) + BN + ReLU + flatten + linear: learns Fashion-MNIST in a few steps.
#[derive(Module, Debug)]
struct Tiny {
    conv: Conv2d,
    bn: BatchNorm,
    head: Linear,
    panic_in_forward: bool,
}

impl Tiny {
    fn new(classes: usize, width: usize, resolution: usize, device: &Device) -> Self {
        let side = resolution.div_ceil(2);
        Tiny {
            conv: Conv2dConfig::new([1, width], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(width).init(device),
            head: LinearConfig::new(width * side * side, classes).init(device),
            panic_in_forward: false,
        }
    }
}

impl Classifier for Tiny {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        assert!(!self.panic_in_forward, "test panic in forward");
        let h = relu(self.bn.forward(self.conv.forward(x)));
        let [b, c, y, x] = h.dims();
        self.head.forward(h.reshape([b, c * y * x]))
    }
}

fn task_with(f: impl FnOnce(&mut ProxyTask)) -> ProxyTask {
    let mut t = ProxyTask::by_name_or_path("fashion-mnist-tiny").unwrap();
    f(&mut t);
    t
}

fn tiny_data() -> &'static TaskData {
    static D: OnceLock<TaskData> = OnceLock::new();
    D.get_or_init(|| task_with(|_| {}).materialise().unwrap())
}

fn run(data: &TaskData, seed: u64, threads: usize) -> Result<Trained<Tiny>, TrainError> {
    let (classes, res) = (data.classes, data.resolution());
    train(
        data,
        move |d: &Device| Tiny::new(classes, 8, res, d),
        &TrainOptions::new(seed, threads),
        &mut |_| {},
    )
}

/// A fractional epoch count (the warm-start proxy below one epoch) stops the last epoch
/// early: 1.5 epochs of 12 steps are 18 steps over 2 epochs, and 0.25 epoch is 3 steps;
/// the images match `training_images`, the budget unit of a search.
#[test]
fn fractional_epochs_stop_the_last_epoch_early() {
    let data = tiny_data();
    for (epochs, steps, epochs_run) in [(1.5, 18, 2), (0.25, 3, 1)] {
        let mut opts = TrainOptions::new(3, 1);
        opts.epochs = Some(epochs);
        let (mut seen, mut ends) = (0, Vec::new());
        let out = train(
            data,
            |d: &Device| Tiny::new(10, 4, 14, d),
            &opts,
            &mut |p| match p {
                TrainProgress::Step { .. } => seen += 1,
                TrainProgress::Epoch { epoch, .. } => ends.push(epoch),
                TrainProgress::Evaluating { .. } => {}
            },
        )
        .unwrap();
        let r = &out.report;
        assert_eq!((r.steps, seen), (steps, steps), "{epochs} epochs");
        assert_eq!(r.epochs, epochs_run, "{epochs} epochs");
        assert_eq!(ends, (0..epochs_run).collect::<Vec<_>>());
        assert_eq!(r.epoch_losses.len(), epochs_run);
        assert_eq!(r.images_processed, steps * 32);
        assert_eq!(training_images(data, epochs), (steps * 32) as u64);
        assert!(r.val_accuracy.is_finite());
    }
}

#[test]
fn training_lowers_the_loss_and_learns() {
    let data = task_with(|t| t.epochs = 3).materialise().unwrap();
    let mut steps = 0;
    let mut epochs = 0;
    let mut last_step_loss = Vec::new();
    let out = train(
        &data,
        |d: &Device| Tiny::new(10, 8, 14, d),
        &TrainOptions::new(1, 1),
        &mut |p| match p {
            TrainProgress::Step { loss, .. } => {
                steps += 1;
                last_step_loss.push(loss);
            }
            TrainProgress::Epoch { .. } => epochs += 1,
            TrainProgress::Evaluating { .. } => {}
        },
    )
    .unwrap();
    let r = &out.report;
    assert_eq!((r.epochs, r.steps), (3, 36));
    assert_eq!((steps, epochs), (36, 3));
    assert_eq!(r.images_processed, 36 * 32);
    assert_eq!(r.epoch_losses.len(), 3);
    assert!(
        r.epoch_losses[2] < r.epoch_losses[0] - 0.2,
        "{:?}",
        r.epoch_losses
    );
    assert!(r.epoch_losses[0] < 2.6, "{:?}", r.epoch_losses);
    assert_eq!(r.final_loss, r.epoch_losses[2]);
    assert!(r.val_accuracy > 0.35, "val accuracy {}", r.val_accuracy);
    assert!(r.val_loss.is_finite() && r.val_loss < 2.2, "{}", r.val_loss);
    assert!(r.test_accuracy.is_none());
    assert!(r.cpu_time_measured);
    assert!(
        r.cpu_seconds > 0.0 && r.cpu_seconds <= r.wall_seconds * 1.05 + 0.05,
        "{r:?}"
    );
    // The model returned is the inference copy and reproduces the reported accuracy.
    let x = Tensor::<4>::from_data(
        burn::tensor::TensorData::new(data.val.image(0).to_vec(), [1, 1, 14, 14]),
        &Device::flex(),
    );
    assert_eq!(out.model.forward(x).dims(), [1, 10]);
}

#[test]
fn same_seed_same_result_bit_for_bit_with_one_thread() {
    let a = run(tiny_data(), 7, 1).unwrap().report;
    let b = run(tiny_data(), 7, 1).unwrap().report;
    assert_eq!(a.epoch_losses, b.epoch_losses);
    assert_eq!(a.val_accuracy, b.val_accuracy);
    assert_eq!(a.val_loss, b.val_loss);
    let c = run(tiny_data(), 8, 1).unwrap().report;
    assert_ne!(a.epoch_losses, c.epoch_losses);
}

#[test]
fn concurrent_children_reproduce_their_sequential_results() {
    let seq: Vec<_> = [11u64, 12]
        .iter()
        .map(|&s| run(tiny_data(), s, 1).unwrap().report)
        .collect();
    let par: Vec<_> = std::thread::scope(|s| {
        let h: Vec<_> = [11u64, 12]
            .iter()
            .map(|&seed| s.spawn(move || run(tiny_data(), seed, 1).unwrap().report))
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (a, b) in seq.iter().zip(&par) {
        assert_eq!(a.epoch_losses, b.epoch_losses);
        assert_eq!(a.val_loss, b.val_loss);
    }
}

#[test]
fn nan_inputs_are_reported_as_divergence_at_the_first_step() {
    let mut data = task_with(|_| {}).materialise().unwrap();
    data.train.x.iter_mut().for_each(|v| *v = f32::NAN);
    let e = run(&data, 0, 1).unwrap_err();
    assert_eq!(e, TrainError::Diverged { epoch: 0, step: 0 });
    assert!(e.to_string().contains("diverged"), "{e}");
}

#[test]
fn absurd_learning_rate_diverges() {
    let data = task_with(|t| {
        t.lr = 1e30;
        t.warmup_epochs = 0.0;
        t.optimizer = Optimizer::Sgd {
            momentum: 0.9,
            nesterov: false,
        };
    })
    .materialise()
    .unwrap();
    let e = run(&data, 0, 1).unwrap_err();
    assert!(matches!(e, TrainError::Diverged { epoch: 0, .. }), "{e:?}");
}

#[test]
fn adam_trains_too() {
    let data = task_with(|t| {
        t.optimizer = Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        };
        t.lr = 0.01;
        t.label_smoothing = Some(0.1);
    })
    .materialise()
    .unwrap();
    let r = run(&data, 0, 1).unwrap().report;
    assert!(r.val_accuracy > 0.4, "{r:?}");
}

#[test]
fn test_accuracy_only_on_request() {
    let data = task_with(|t| t.classes = Some(vec![1, 9]))
        .materialise()
        .unwrap();
    let mut opts = TrainOptions::new(0, 1);
    opts.evaluate_test = true;
    let r = train(
        &data,
        |d: &Device| Tiny::new(2, 8, 14, d),
        &opts,
        &mut |_| {},
    )
    .unwrap()
    .report;
    let acc = r.test_accuracy.unwrap();
    assert!(acc > 0.9, "trousers vs ankle boots: {acc}");
}

#[test]
fn wrong_class_count_and_bad_options_are_errors() {
    let data = task_with(|t| t.classes = Some(vec![1, 9]))
        .materialise()
        .unwrap();
    let e = train(
        &data,
        |d: &Device| Tiny::new(10, 8, 14, d),
        &TrainOptions::new(0, 1),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::ClassMismatch {
                expected: 2,
                found: 10,
                ..
            }
        ),
        "{e:?}"
    );
    let e = run(tiny_data(), 0, 0).unwrap_err();
    assert!(matches!(e, TrainError::InvalidOptions(_)), "{e:?}");
}

#[test]
fn a_panicking_network_is_a_failed_trial_not_a_crash() {
    let e = train(
        tiny_data(),
        |d: &Device| {
            let mut m = Tiny::new(10, 8, 14, d);
            m.panic_in_forward = true;
            m
        },
        &TrainOptions::new(0, 1),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(e, TrainError::Panicked(ref m) if m.contains("test panic in forward")),
        "{e:?}"
    );
    // The trainer still works afterwards (the init lock is not poisoned for good).
    assert!(run(tiny_data(), 0, 1).is_ok());
}

/// Throughput and thread use; run with
/// `cargo test -p fnas-child --test train -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn throughput() {
    let data = task_with(|t| {
        t.resolution = None;
        t.train_images = 2048;
        t.batch_size = 64;
    })
    .materialise()
    .unwrap();
    let proc_cpu = || {
        let s = std::fs::read_to_string("/proc/self/stat").unwrap();
        let f: Vec<&str> = s.rsplit(')').next().unwrap().split_whitespace().collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    };
    for width in [16usize, 64] {
        for threads in [1usize, 2] {
            let p0 = proc_cpu();
            let r = train(
                &data,
                move |d: &Device| Tiny::new(10, width, 28, d),
                &TrainOptions::new(0, threads),
                &mut |_| {},
            )
            .unwrap()
            .report;
            let p1 = proc_cpu();
            println!(
                "width {width} threads {threads}: {:.0} img/s train, wall {:.2}s, pool cpu {:.2}s, process cpu {:.2}s, val acc {:.3}",
                r.images_per_second(),
                r.wall_seconds,
                r.cpu_seconds,
                p1 - p0,
                r.val_accuracy
            );
        }
    }
    // Two children side by side, one thread each.
    let t0 = std::time::Instant::now();
    let p0 = proc_cpu();
    let reps: Vec<_> = std::thread::scope(|s| {
        let h: Vec<_> = [0u64, 1]
            .iter()
            .map(|&seed| {
                let data = &data;
                s.spawn(move || {
                    train(
                        data,
                        |d: &Device| Tiny::new(10, 64, 28, d),
                        &TrainOptions::new(seed, 1),
                        &mut |_| {},
                    )
                    .unwrap()
                    .report
                })
            })
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!(
        "2 children x 1 thread (width 64): wall {:.2}s total, each {:.0} / {:.0} img/s, pool cpu {:.2}+{:.2}s, process cpu {:.2}s",
        t0.elapsed().as_secs_f64(),
        reps[0].images_per_second(),
        reps[1].images_per_second(),
        reps[0].cpu_seconds,
        reps[1].cpu_seconds,
        proc_cpu() - p0
    );
    // Two threads twice: bit-exact or not?
    let a = run(&data, 3, 2).unwrap().report;
    let b = run(&data, 3, 2).unwrap().report;
    println!(
        "2 threads, same seed twice: losses equal: {}, {:?} vs {:?}",
        a.epoch_losses == b.epoch_losses,
        a.epoch_losses,
        b.epoch_losses
    );
    let c = run(&data, 3, 1).unwrap().report;
    println!(
        "1 thread vs 2 threads, same seed: {:?} vs {:?}",
        c.epoch_losses, a.epoch_losses
    );
}
