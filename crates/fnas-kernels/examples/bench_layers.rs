//! Times the dense convolution kernels layer by layer on two child networks (batch 64)
//! on rayon pools of 1 and 2 threads: `cargo run --release -p fnas-kernels --example
//! bench_layers`. `examples/torch_layers.py` times the same layers in PyTorch.
//!
//! Prints milliseconds per call of forward, backward_input and backward_weight, and per
//! network the sum of one training step (times the layer's count; a stem has no
//! backward_input). Each figure is the fastest of ~0.25 s of calls, with 1-thread and
//! 2-thread calls alternating so that both see the same load. An optional argument
//! keeps only the layers whose name contains it.

use std::time::{Duration, Instant};

use fnas_kernels::{dense, ConvGeom};

/// A layer: name, geometry, how many times the network has it, whether its input
/// needs a gradient.
struct Layer {
    name: &'static str,
    g: ConvGeom,
    count: usize,
    dx: bool,
}

fn layer(
    name: &'static str,
    cin: usize,
    cout: usize,
    hw: usize,
    kernel: usize,
    stride: usize,
    count: usize,
) -> Layer {
    Layer {
        name,
        g: ConvGeom {
            batch: 64,
            cin,
            cout,
            h: hw,
            w: hw,
            kernel,
            stride,
            pad: kernel / 2,
            groups: 1,
        },
        count,
        dx: !name.starts_with("stem"),
    }
}

/// Fewest seconds per call of `f` on each pool, alternating pools call by call.
fn time(pools: &[rayon::ThreadPool], mut f: impl FnMut() + Send) -> Vec<f64> {
    let mut best = vec![f64::INFINITY; pools.len()];
    for pool in pools {
        pool.install(&mut f);
    }
    let start = Instant::now();
    let mut rounds = 0;
    while rounds < 5 || (start.elapsed() < Duration::from_millis(250) && rounds < 300) {
        for (b, pool) in best.iter_mut().zip(pools) {
            let t = Instant::now();
            pool.install(&mut f);
            *b = b.min(t.elapsed().as_secs_f64());
        }
        rounds += 1;
    }
    best
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let threads = [1, 2];
    let pools: Vec<_> = threads
        .iter()
        .map(|&n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("rayon pool")
        })
        .collect();
    let networks = [
        (
            "dense",
            vec![
                layer("stem 3x3 1->16 28", 1, 16, 28, 3, 1, 1),
                layer("k7 16->16 28", 16, 16, 28, 7, 1, 1),
                layer("k5 s2 16->24 28", 16, 24, 28, 5, 2, 1),
                layer("k5 24->24 14 (x2)", 24, 24, 14, 5, 1, 2),
                layer("k3 s2 24->48 14", 24, 48, 14, 3, 2, 1),
                layer("k5 48->80 7", 48, 80, 7, 5, 1, 1),
                layer("k5 80->80 7", 80, 80, 7, 5, 1, 1),
                layer("k7 s2 80->96 7", 80, 96, 7, 7, 2, 1),
                layer("head 1x1 96->128 4", 96, 128, 4, 1, 1, 1),
            ],
        ),
        (
            "mbconv",
            vec![
                layer("1x1 24->144 28", 24, 144, 28, 1, 1, 1),
                layer("1x1 144->24 28", 144, 24, 28, 1, 1, 1),
                layer("1x1 40->240 14", 40, 240, 14, 1, 1, 1),
                layer("1x1 240->48 14", 240, 48, 14, 1, 1, 1),
                layer("1x1 96->576 7", 96, 576, 7, 1, 1, 1),
                layer("k7 16->24 28", 16, 24, 28, 7, 1, 1),
                layer("k7 24->24 28", 24, 24, 28, 7, 1, 1),
            ],
        ),
    ];
    println!(
        "{:<20} {:>3} | {:>8} {:>8} {:>8} | {:>8}",
        "layer (batch 64)", "thr", "fwd ms", "bwd_in", "bwd_w", "train"
    );
    for (net, layers) in networks {
        let mut sums = vec![0f64; threads.len()];
        for l in layers.iter().filter(|l| l.name.contains(&filter)) {
            let g = l.g;
            let x: Vec<f32> = (0..g.x_len())
                .map(|i| (i % 17) as f32 * 0.1 - 0.8)
                .collect();
            let w: Vec<f32> = (0..g.w_len())
                .map(|i| (i % 13) as f32 * 0.1 - 0.6)
                .collect();
            let dy: Vec<f32> = (0..g.y_len())
                .map(|i| (i % 11) as f32 * 0.1 - 0.5)
                .collect();
            let mut y = vec![0.0; g.y_len()];
            let mut dx = vec![0.0; g.x_len()];
            let mut dw = vec![0.0; g.w_len()];
            let fwd = time(&pools, || {
                dense::forward(&g, &x, &w, &mut y).expect("forward")
            });
            let bin = if l.dx {
                time(&pools, || {
                    dense::backward_input(&g, &dy, &w, &mut dx).expect("backward_input")
                })
            } else {
                vec![0.0; threads.len()]
            };
            let bw = time(&pools, || {
                dense::backward_weight(&g, &x, &dy, &mut dw).expect("backward_weight")
            });
            for (i, n) in threads.iter().enumerate() {
                let train = fwd[i] + bin[i] + bw[i];
                sums[i] += train * l.count as f64;
                println!(
                    "{:<20} {n:>3} | {:>8.3} {:>8.3} {:>8.3} | {:>8.3}",
                    l.name,
                    fwd[i] * 1e3,
                    bin[i] * 1e3,
                    bw[i] * 1e3,
                    train * 1e3
                );
            }
        }
        for (i, n) in threads.iter().enumerate() {
            println!(
                "{:<20} {n:>3} | {:>8} {:>8} {:>8} | {:>8.3}  (x{:.2} over 1 thread)",
                format!("sum {net}"),
                "",
                "",
                "",
                sums[i] * 1e3,
                sums[0] / sums[i]
            );
        }
    }
}
