//! Times the dense convolution kernels on typical child shapes (batch 64) on rayon pools
//! of 1 and 2 threads: `cargo run --release -p fnas-kernels --example bench_dense`.
//!
//! Prints milliseconds per call and GFLOP/s (2·batch·cout·oh·ow·cin·k² per call), and
//! for 2 threads the speed-up over 1. The machine is shared, so each figure is the
//! fastest of ~0.4 s of calls (the minimum is what other processes disturb least), with
//! 1-thread and 2-thread calls alternating so that both see the same load.

use std::time::{Duration, Instant};

use fnas_kernels::{dense, ConvGeom};

fn geom(cin: usize, cout: usize, hw: usize, kernel: usize, stride: usize) -> ConvGeom {
    ConvGeom {
        batch: 64,
        cin,
        cout,
        h: hw,
        w: hw,
        kernel,
        stride,
        pad: kernel / 2,
        groups: 1,
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
    while rounds < 5 || (start.elapsed() < Duration::from_millis(400) && rounds < 300) {
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
    let shapes = [
        ("stem 3x3 1->16 28x28", geom(1, 16, 28, 3, 1)),
        ("1x1 16->96 14x14", geom(16, 96, 14, 1, 1)),
        ("1x1 96->24 14x14", geom(96, 24, 14, 1, 1)),
        ("3x3 24->24 14x14", geom(24, 24, 14, 3, 1)),
        ("5x5 40->40 14x14 s2", geom(40, 40, 14, 5, 2)),
        ("1x1 s2 16->32 28x28", geom(16, 32, 28, 1, 2)),
        ("head 1x1 96->256 7x7", geom(96, 256, 7, 1, 1)),
    ];
    println!(
        "{:<22} {:>3} | {:>8} {:>6} {:>5} | {:>8} {:>6} {:>5} | {:>8} {:>6} {:>5}",
        "shape (batch 64)", "thr", "fwd ms", "GF/s", "", "bwd_in", "GF/s", "", "bwd_w", "GF/s", ""
    );
    for (name, g) in shapes {
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
        let flop =
            2.0 * (g.batch * g.cout * g.out_h() * g.out_w() * g.cin * g.kernel * g.kernel) as f64;
        let t = [
            time(&pools, || {
                dense::forward(&g, &x, &w, &mut y).expect("forward")
            }),
            time(&pools, || {
                dense::backward_input(&g, &dy, &w, &mut dx).expect("backward_input")
            }),
            time(&pools, || {
                dense::backward_weight(&g, &x, &dy, &mut dw).expect("backward_weight")
            }),
        ];
        for (i, n) in threads.iter().enumerate() {
            let cells: Vec<String> = t
                .iter()
                .map(|per_pool| {
                    let speed = if i == 0 {
                        String::new()
                    } else {
                        format!("x{:.2}", per_pool[0] / per_pool[i])
                    };
                    format!(
                        "{:>8.3} {:>6.1} {:>5}",
                        per_pool[i] * 1e3,
                        flop / per_pool[i] / 1e9,
                        speed
                    )
                })
                .collect();
            println!("{name:<22} {n:>3} | {}", cells.join(" | "));
        }
    }
}
