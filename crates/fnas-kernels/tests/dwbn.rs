//! The depthwise and BatchNorm kernels against the reference loops, on many shapes, on
//! rayon pools of 1 and 2 threads, and with wrong buffer lengths.

use fnas_kernels::{bn, depthwise, reference, BnGeom, ConvGeom, KernelError};

/// Deterministic values in [-1, 1) (xorshift), different per `seed`.
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

/// max|a - b| / max(1, max|b|).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max);
    let scale = b.iter().map(|y| f64::from(y.abs())).fold(1.0, f64::max);
    diff / scale
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    let e = rel_err(a, b);
    assert!(e <= 1e-4, "{what}: relative error {e}");
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn dw(
    batch: usize,
    c: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> ConvGeom {
    ConvGeom {
        batch,
        cin: c,
        cout: c,
        h,
        w,
        kernel,
        stride,
        pad,
        groups: c,
    }
}

fn dw_shapes() -> Vec<ConvGeom> {
    vec![
        dw(2, 5, 9, 9, 3, 1, 1),
        dw(2, 13, 11, 7, 5, 2, 2),
        dw(1, 37, 8, 8, 7, 1, 3),
        dw(3, 5, 1, 1, 3, 1, 1),
        dw(2, 5, 1, 1, 3, 2, 1),
        dw(1, 4, 2, 2, 5, 1, 2),
        dw(1, 4, 2, 2, 5, 2, 2),
        dw(2, 3, 7, 9, 3, 2, 1),
        dw(1, 5, 13, 13, 7, 2, 3),
        dw(1, 5, 14, 14, 5, 2, 2),
        dw(64, 5, 10, 10, 3, 2, 1),
        dw(64, 3, 7, 7, 7, 1, 3),
        dw(2, 6, 6, 6, 3, 1, 0),
        // Several 16-wide column chunks per row.
        dw(1, 3, 30, 33, 3, 1, 1),
        dw(1, 3, 37, 35, 5, 2, 2),
        dw(2, 2, 9, 40, 7, 1, 3),
        dw(2, 3, 8, 8, 3, 3, 1),
        dw(1, 2, 5, 5, 3, 2, 2),
        dw(2, 3, 5, 6, 1, 1, 0),
        dw(2, 3, 5, 7, 1, 2, 0),
        dw(1, 2, 3, 3, 3, 1, 4),
        // groups == cin == cout == 1 is a depthwise convolution too.
        dw(2, 1, 5, 5, 3, 1, 1),
    ]
}

/// (y, dx, dw) of the fast kernels.
fn dw_run(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut y = vec![f32::NAN; g.y_len()];
    let mut dx = vec![f32::NAN; g.x_len()];
    let mut dwt = vec![f32::NAN; g.w_len()];
    depthwise::forward(g, x, w, &mut y).unwrap();
    depthwise::backward_input(g, dy, w, &mut dx).unwrap();
    depthwise::backward_weight(g, x, dy, &mut dwt).unwrap();
    (y, dx, dwt)
}

#[test]
fn depthwise_matches_reference_on_one_and_two_threads() {
    let (p1, p2) = (pool(1), pool(2));
    for (i, g) in dw_shapes().iter().enumerate() {
        let seed = i as u64 * 3;
        let x = data(g.x_len(), seed + 1);
        let w = data(g.w_len(), seed + 2);
        let dy = data(g.y_len(), seed + 3);
        let mut y = vec![0.0; g.y_len()];
        let mut dx = vec![0.0; g.x_len()];
        let mut dwt = vec![0.0; g.w_len()];
        reference::conv_forward(g, &x, &w, &mut y).unwrap();
        reference::conv_backward_input(g, &dy, &w, &mut dx).unwrap();
        reference::conv_backward_weight(g, &x, &dy, &mut dwt).unwrap();
        let one = p1.install(|| dw_run(g, &x, &w, &dy));
        let two = p2.install(|| dw_run(g, &x, &w, &dy));
        assert_close(&format!("forward {g:?}"), &one.0, &y);
        assert_close(&format!("backward_input {g:?}"), &one.1, &dx);
        assert_close(&format!("backward_weight {g:?}"), &one.2, &dwt);
        assert_eq!(one, two, "1 vs 2 threads {g:?}");
    }
}

#[test]
fn depthwise_rejects_bad_shapes_and_buffers() {
    let g = dw(2, 3, 5, 5, 3, 1, 1);
    let (x, w, y) = (
        vec![0.0; g.x_len()],
        vec![0.0; g.w_len()],
        vec![0.0; g.y_len()],
    );
    let short = |v: &Vec<f32>| v[..v.len() - 1].to_vec();
    let mut out_y = y.clone();
    let mut out_x = x.clone();
    let mut out_w = w.clone();
    assert!(depthwise::forward(&g, &short(&x), &w, &mut out_y).is_err());
    assert!(depthwise::forward(&g, &x, &short(&w), &mut out_y).is_err());
    assert!(depthwise::forward(&g, &x, &w, &mut short(&y)).is_err());
    assert!(depthwise::backward_input(&g, &short(&y), &w, &mut out_x).is_err());
    assert!(depthwise::backward_input(&g, &y, &short(&w), &mut out_x).is_err());
    assert!(depthwise::backward_input(&g, &y, &w, &mut short(&x)).is_err());
    assert!(depthwise::backward_weight(&g, &short(&x), &y, &mut out_w).is_err());
    assert!(depthwise::backward_weight(&g, &x, &short(&y), &mut out_w).is_err());
    assert!(depthwise::backward_weight(&g, &x, &y, &mut short(&w)).is_err());
    // A dense convolution, a kernel larger than the padded input, a zero size.
    for bad in [
        ConvGeom { groups: 1, ..g },
        ConvGeom { kernel: 9, ..g },
        ConvGeom { stride: 0, ..g },
        ConvGeom { batch: 0, ..g },
    ] {
        let mut y = vec![0.0; 4096];
        let e = depthwise::forward(&bad, &x, &w, &mut y);
        assert!(matches!(e, Err(KernelError::Shape(_))), "{bad:?}: {e:?}");
        let mut dx = vec![0.0; 4096];
        assert!(depthwise::backward_input(&bad, &y, &w, &mut dx).is_err());
        let mut dw = vec![0.0; 4096];
        assert!(depthwise::backward_weight(&bad, &x, &y, &mut dw).is_err());
    }
}

fn bn_shapes() -> Vec<BnGeom> {
    [
        (64, 5, 49),
        (1, 13, 1),
        (2, 37, 17),
        (64, 3, 784),
        (3, 7, 33),
        (64, 13, 1),
        (1, 1, 5),
    ]
    .into_iter()
    .map(|(batch, channels, hw)| BnGeom {
        batch,
        channels,
        hw,
    })
    .collect()
}

struct BnOut {
    y: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

#[allow(clippy::type_complexity)]
fn bn_ref(g: &BnGeom, x: &[f32], gamma: &[f32], beta: &[f32], dy: &[f32], eps: f64) -> BnOut {
    let c = g.channels;
    let (mut y, mut mean, mut var) = (vec![0.0; g.len()], vec![0.0; c], vec![0.0; c]);
    reference::bn_train_forward(g, x, gamma, beta, eps, &mut y, &mut mean, &mut var).unwrap();
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; g.len()], vec![0.0; c], vec![0.0; c]);
    reference::bn_train_backward(
        g,
        x,
        dy,
        gamma,
        &mean,
        &var,
        eps,
        &mut dx,
        &mut dgamma,
        &mut dbeta,
    )
    .unwrap();
    BnOut {
        y,
        mean,
        var,
        dx,
        dgamma,
        dbeta,
    }
}

/// The fast forward and backward (with or without ReLU), all outputs pre-filled with NaN.
fn bn_fast(
    g: &BnGeom,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
    eps: f64,
    relu: bool,
) -> BnOut {
    let c = g.channels;
    let nan = |n| vec![f32::NAN; n];
    let (mut y, mut mean, mut var) = (nan(g.len()), nan(c), nan(c));
    let (mut dx, mut dgamma, mut dbeta) = (nan(g.len()), nan(c), nan(c));
    if relu {
        bn::train_forward_relu(g, x, gamma, beta, eps, &mut y, &mut mean, &mut var).unwrap();
        bn::train_backward_relu(
            g,
            x,
            &y,
            dy,
            gamma,
            &mean,
            &var,
            eps,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
        )
        .unwrap();
    } else {
        bn::train_forward(g, x, gamma, beta, eps, &mut y, &mut mean, &mut var).unwrap();
        bn::train_backward(
            g,
            x,
            dy,
            gamma,
            &mean,
            &var,
            eps,
            &mut dx,
            &mut dgamma,
            &mut dbeta,
        )
        .unwrap();
    }
    BnOut {
        y,
        mean,
        var,
        dx,
        dgamma,
        dbeta,
    }
}

fn bn_inputs(
    g: &BnGeom,
    seed: u64,
    offset: f32,
    scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let x: Vec<f32> = data(g.len(), seed)
        .into_iter()
        .map(|v| offset + scale * v)
        .collect();
    let gamma: Vec<f32> = data(g.channels, seed + 1)
        .into_iter()
        .map(|v| 1.0 + 0.5 * v)
        .collect();
    let beta = data(g.channels, seed + 2);
    let dy = data(g.len(), seed + 3);
    (x, gamma, beta, dy)
}

fn check_bn(g: &BnGeom, seed: u64, offset: f32, scale: f32) {
    let eps = 1e-5;
    let (x, gamma, beta, dy) = bn_inputs(g, seed, offset, scale);
    let r = bn_ref(g, &x, &gamma, &beta, &dy, eps);
    let (p1, p2) = (pool(1), pool(2));
    let f = p1.install(|| bn_fast(g, &x, &gamma, &beta, &dy, eps, false));
    let f2 = p2.install(|| bn_fast(g, &x, &gamma, &beta, &dy, eps, false));
    let what = format!("{g:?} offset {offset} scale {scale}");
    assert_close(&format!("y {what}"), &f.y, &r.y);
    assert_close(&format!("mean {what}"), &f.mean, &r.mean);
    for (a, b) in f.var.iter().zip(&r.var) {
        assert!(
            (a - b).abs() <= 1e-4 * b.max(1e-3),
            "var {what}: {a} vs {b}"
        );
    }
    assert_close(&format!("dx {what}"), &f.dx, &r.dx);
    assert_close(&format!("dgamma {what}"), &f.dgamma, &r.dgamma);
    assert_close(&format!("dbeta {what}"), &f.dbeta, &r.dbeta);
    for (a, b) in [
        (&f.y, &f2.y),
        (&f.mean, &f2.mean),
        (&f.var, &f2.var),
        (&f.dx, &f2.dx),
        (&f.dgamma, &f2.dgamma),
        (&f.dbeta, &f2.dbeta),
    ] {
        assert_eq!(a, b, "1 vs 2 threads {what}");
    }

    // Fused ReLU: against reference BN then ReLU, and the reference backward of the
    // masked gradient.
    let fr = p1.install(|| bn_fast(g, &x, &gamma, &beta, &dy, eps, true));
    let fr2 = p2.install(|| bn_fast(g, &x, &gamma, &beta, &dy, eps, true));
    let y_relu: Vec<f32> = r.y.iter().map(|v| v.max(0.0)).collect();
    assert_close(&format!("relu y {what}"), &fr.y, &y_relu);
    assert_eq!(fr.mean, f.mean);
    assert_eq!(fr.var, f.var);
    let dy_masked: Vec<f32> = dy
        .iter()
        .zip(&fr.y)
        .map(|(&d, &y)| if y > 0.0 { d } else { 0.0 })
        .collect();
    let rm = bn_ref(g, &x, &gamma, &beta, &dy_masked, eps);
    assert_close(&format!("relu dx {what}"), &fr.dx, &rm.dx);
    assert_close(&format!("relu dgamma {what}"), &fr.dgamma, &rm.dgamma);
    assert_close(&format!("relu dbeta {what}"), &fr.dbeta, &rm.dbeta);
    assert_eq!(fr.y, fr2.y);
    assert_eq!(fr.dx, fr2.dx);
    assert_eq!(fr.dgamma, fr2.dgamma);
}

#[test]
fn bn_matches_reference_on_one_and_two_threads() {
    for (i, g) in bn_shapes().iter().enumerate() {
        check_bn(g, i as u64 * 5 + 1, 0.0, 1.0);
        check_bn(g, i as u64 * 5 + 2, 0.3, 2.0);
    }
}

/// Mean much larger than the standard deviation: the single-pass statistics must not
/// cancel.
#[test]
fn bn_statistics_stay_accurate_with_a_large_mean() {
    let g = BnGeom {
        batch: 64,
        channels: 3,
        hw: 784,
    };
    check_bn(&g, 11, 1000.0, 1.0);
    check_bn(&g, 12, 1.0e4, 0.5);
    check_bn(&g, 13, -300.0, 0.01);
}

#[test]
fn bn_inference_matches_formula() {
    let eps = 1e-3;
    for g in bn_shapes() {
        let c = g.channels;
        let x = data(g.len(), 7);
        let gamma = data(c, 8);
        let beta = data(c, 9);
        let mean = data(c, 10);
        let var: Vec<f32> = data(c, 11).iter().map(|v| v.abs() + 0.1).collect();
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = i / g.hw % c;
                ((f64::from(v) - f64::from(mean[ch])) / (f64::from(var[ch]) + eps).sqrt()
                    * f64::from(gamma[ch])
                    + f64::from(beta[ch])) as f32
            })
            .collect();
        let run = |threads| {
            let mut y = vec![f32::NAN; g.len()];
            pool(threads)
                .install(|| bn::inference_forward(&g, &x, &gamma, &beta, &mean, &var, eps, &mut y))
                .unwrap();
            y
        };
        let y1 = run(1);
        assert_close(&format!("inference {g:?}"), &y1, &want);
        assert_eq!(y1, run(2));
    }
}

#[test]
fn bn_rejects_bad_buffers() {
    let g = BnGeom {
        batch: 2,
        channels: 3,
        hw: 4,
    };
    let (n, c) = (g.len(), g.channels);
    let v = |len: usize| vec![0.5f32; len];
    let eps = 1e-5;
    // Each call with one buffer one value short (index `bad`), for every buffer.
    for bad in 0..6 {
        let l = |i: usize, len: usize| if i == bad { len - 1 } else { len };
        let (x, gamma, beta) = (v(l(0, n)), v(l(2, c)), v(l(3, c)));
        let (mut y, mut mean, mut var) = (v(l(1, n)), v(l(4, c)), v(l(5, c)));
        assert!(
            bn::train_forward(&g, &x, &gamma, &beta, eps, &mut y, &mut mean, &mut var).is_err()
        );
        assert!(
            bn::train_forward_relu(&g, &x, &gamma, &beta, eps, &mut y, &mut mean, &mut var)
                .is_err()
        );
        assert!(bn::inference_forward(&g, &x, &gamma, &beta, &mean, &var, eps, &mut y).is_err());
    }
    for bad in 0..9 {
        let l = |i: usize, len: usize| if i == bad { len - 1 } else { len };
        let (x, dy, yr) = (v(l(0, n)), v(l(1, n)), v(l(8, n)));
        let (gamma, mean, var) = (v(l(3, c)), v(l(4, c)), v(l(5, c)));
        let (mut dx, mut dg, mut db) = (v(l(2, n)), v(l(6, c)), v(l(7, c)));
        if bad < 8 {
            assert!(bn::train_backward(
                &g, &x, &dy, &gamma, &mean, &var, eps, &mut dx, &mut dg, &mut db
            )
            .is_err());
        }
        assert!(bn::train_backward_relu(
            &g, &x, &yr, &dy, &gamma, &mean, &var, eps, &mut dx, &mut dg, &mut db
        )
        .is_err());
    }
    let zero = BnGeom { hw: 0, ..g };
    let mut y = v(0);
    assert!(matches!(
        bn::inference_forward(&zero, &[], &v(c), &v(c), &v(c), &v(c), eps, &mut y),
        Err(KernelError::Shape(_))
    ));
}

/// Every small geometry (even kernels, strides up to 3, padding up to 3, planes down to
/// 1x1, padding wider than the kernel) against the reference.
#[test]
fn depthwise_matches_reference_on_all_small_geometries() {
    let mut n = 0;
    for h in 1..=6 {
        for w in [1, 4, 7] {
            for kernel in [1, 2, 3, 5] {
                for stride in 1..=3 {
                    for pad in 0..=3 {
                        let g = dw(2, 3, h, w, kernel, stride, pad);
                        if g.check().is_err() {
                            continue;
                        }
                        n += 1;
                        let x = data(g.x_len(), n);
                        let wt = data(g.w_len(), n + 1);
                        let dy = data(g.y_len(), n + 2);
                        let mut y = vec![0.0; g.y_len()];
                        let mut dx = vec![0.0; g.x_len()];
                        let mut dwt = vec![0.0; g.w_len()];
                        reference::conv_forward(&g, &x, &wt, &mut y).unwrap();
                        reference::conv_backward_input(&g, &dy, &wt, &mut dx).unwrap();
                        reference::conv_backward_weight(&g, &x, &dy, &mut dwt).unwrap();
                        let fast = dw_run(&g, &x, &wt, &dy);
                        assert_close(&format!("forward {g:?}"), &fast.0, &y);
                        assert_close(&format!("backward_input {g:?}"), &fast.1, &dx);
                        assert_close(&format!("backward_weight {g:?}"), &fast.2, &dwt);
                    }
                }
            }
        }
    }
    assert!(n > 300, "{n} geometries");
}

/// An outlier in the first chunk (which sets the statistics' shift) on top of a large
/// mean: statistics and outputs still match the two-pass reference.
#[test]
fn bn_statistics_survive_an_outlier_in_the_first_chunk() {
    let g = BnGeom {
        batch: 64,
        channels: 2,
        hw: 49,
    };
    let (mut x, gamma, beta, dy) = bn_inputs(&g, 21, 500.0, 0.1);
    for ch in 0..g.channels {
        x[ch * g.hw] = 800.0;
    }
    let r = bn_ref(&g, &x, &gamma, &beta, &dy, 1e-5);
    let f = bn_fast(&g, &x, &gamma, &beta, &dy, 1e-5, false);
    assert_close("y", &f.y, &r.y);
    assert_close("mean", &f.mean, &r.mean);
    for (a, b) in f.var.iter().zip(&r.var) {
        assert!((a - b).abs() <= 1e-4 * b, "var {a} vs {b}");
    }
    assert_close("dx", &f.dx, &r.dx);
}
