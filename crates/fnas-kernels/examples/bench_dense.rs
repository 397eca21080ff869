//! Times the dense convolution kernels on typical child shapes (batch 64) on rayon pools
//! of 1 and 2 threads: `cargo run --release -p fnas-kernels --example bench_dense`.
//! Prints the best milliseconds per call over ~0.3 s of calls (the minimum: the machine
//! is shared, and the minimum is the figure other processes disturb least) and GFLOP/s
//! (2·batch·cout·oh·ow·cin·k² per call).

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

/// Fewest seconds per call of `f`, over at least 5 calls and about 0.3 s.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || start.elapsed() < Duration::from_millis(300) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
        if samples.len() >= 200 {
            break;
        }
    }
    samples.into_iter().fold(f64::INFINITY, f64::min)
}

fn main() {
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
        "{:<22} {:>4} | {:>9} {:>7} | {:>9} {:>7} | {:>9} {:>7}",
        "shape (batch 64)", "thr", "fwd ms", "GF/s", "bwd_in ms", "GF/s", "bwd_w ms", "GF/s"
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
        let mut base = [0f64; 3];
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("rayon pool");
            let t = pool.install(|| {
                [
                    time(|| dense::forward(&g, &x, &w, &mut y).expect("forward")),
                    time(|| dense::backward_input(&g, &dy, &w, &mut dx).expect("backward_input")),
                    time(|| dense::backward_weight(&g, &x, &dy, &mut dw).expect("backward_weight")),
                ]
            });
            if threads == 1 {
                base = t;
            }
            let cell = |i: usize| {
                let speed = if threads == 1 {
                    String::new()
                } else {
                    format!(" x{:.2}", base[i] / t[i])
                };
                format!("{:>9.3} {:>7.1}{speed}", t[i] * 1e3, flop / t[i] / 1e9)
            };
            println!(
                "{:<22} {:>4} | {} | {} | {}",
                name,
                threads,
                cell(0),
                cell(1),
                cell(2)
            );
        }
    }
}
