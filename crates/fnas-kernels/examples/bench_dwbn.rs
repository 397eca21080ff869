//! Times the depthwise and BatchNorm kernels on typical child shapes at 1 and 2 threads.
//!
//! `cargo run --release -p fnas-kernels --example bench_dwbn [name filter]`

use std::time::Instant;

use fnas_kernels::{bn, depthwise, BnGeom, ConvGeom};

fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Fastest milliseconds per call over enough calls to fill ~0.3 s (at least 5): the
/// minimum, because the build machine is shared and slower runs are interference.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64();
    let reps = ((0.3 / once.max(1e-6)) as usize).clamp(5, 200);
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[0]
}

/// Runs and prints one kernel, unless a command-line filter is given that `name` does
/// not contain.
fn row(name: &str, f: &mut (dyn FnMut() + Send)) {
    if let Some(filter) = std::env::args().nth(1) {
        if !name.contains(&filter) {
            return;
        }
    }
    let pools: Vec<_> = [1, 2]
        .iter()
        .map(|&n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("pool")
        })
        .collect();
    let t1 = pools[0].install(|| time(&mut *f));
    let t2 = pools[1].install(|| time(&mut *f));
    println!("{name:<44} {t1:>9.3} {t2:>9.3} {:>7.2}x", t1 / t2);
}

fn main() {
    println!(
        "{:<44} {:>9} {:>9} {:>8}",
        "kernel", "1T ms", "2T ms", "speedup"
    );
    for (c, hw, k, s) in [
        (48, 28, 3, 1),
        (96, 14, 5, 1),
        (96, 28, 5, 2),
        (144, 7, 7, 1),
    ] {
        let g = ConvGeom {
            batch: 64,
            cin: c,
            cout: c,
            h: hw,
            w: hw,
            kernel: k,
            stride: s,
            pad: k / 2,
            groups: c,
        };
        let x = data(g.x_len(), 1);
        let w = data(g.w_len(), 2);
        let dy = data(g.y_len(), 3);
        let mut y = vec![0.0; g.y_len()];
        let mut dx = vec![0.0; g.x_len()];
        let mut dw = vec![0.0; g.w_len()];
        let tag = format!("dw 64x{c}x{hw}x{hw} k{k} s{s}");
        row(&format!("{tag} forward"), &mut || {
            depthwise::forward(&g, &x, &w, &mut y).expect("forward")
        });
        row(&format!("{tag} backward_input"), &mut || {
            depthwise::backward_input(&g, &dy, &w, &mut dx).expect("backward_input")
        });
        row(&format!("{tag} backward_weight"), &mut || {
            depthwise::backward_weight(&g, &x, &dy, &mut dw).expect("backward_weight")
        });
    }
    for (c, hw) in [(32, 28), (96, 14)] {
        let g = BnGeom {
            batch: 64,
            channels: c,
            hw: hw * hw,
        };
        let x = data(g.len(), 4);
        let dy = data(g.len(), 5);
        let gamma = vec![1.1f32; c];
        let beta = vec![0.1f32; c];
        let (mut y, mut mean, mut var) = (vec![0.0; g.len()], vec![0.0; c], vec![0.0; c]);
        let (mut dx, mut dg, mut db) = (vec![0.0; g.len()], vec![0.0; c], vec![0.0; c]);
        let eps = 1e-5;
        let tag = format!("bn 64x{c}x{hw}x{hw}");
        row(&format!("{tag} train_forward"), &mut || {
            bn::train_forward(&g, &x, &gamma, &beta, eps, &mut y, &mut mean, &mut var).expect("bn")
        });
        row(&format!("{tag} train_backward"), &mut || {
            bn::train_backward(
                &g, &x, &dy, &gamma, &mean, &var, eps, &mut dx, &mut dg, &mut db,
            )
            .expect("bn")
        });
        row(&format!("{tag} train_forward_relu"), &mut || {
            bn::train_forward_relu(&g, &x, &gamma, &beta, eps, &mut y, &mut mean, &mut var)
                .expect("bn")
        });
        let yr = y.clone();
        row(&format!("{tag} train_backward_relu"), &mut || {
            bn::train_backward_relu(
                &g, &x, &yr, &dy, &gamma, &mean, &var, eps, &mut dx, &mut dg, &mut db,
            )
            .expect("bn")
        });
        row(&format!("{tag} inference_forward"), &mut || {
            bn::inference_forward(&g, &x, &gamma, &beta, &mean, &var, eps, &mut y).expect("bn")
        });
    }
}
