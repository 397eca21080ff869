//! Kernels called from several threads at once on one rayon pool, shapes interleaved:
//! per-thread scratch buffers must never carry one call's data into another's result.

use fnas_kernels::{conv, reference, ConvGeom};

fn geom(
    batch: usize,
    cin: usize,
    cout: usize,
    hw: usize,
    k: usize,
    stride: usize,
    groups: usize,
) -> ConvGeom {
    ConvGeom {
        batch,
        cin,
        cout,
        h: hw,
        w: hw,
        kernel: k,
        stride,
        pad: k / 2,
        groups,
    }
}

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0) - 1.0)
        .collect()
}

fn rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn check(g: &ConvGeom, seed: usize) -> Result<(), String> {
    let x = values(g.x_len(), seed);
    let w = values(g.w_len(), seed + 1);
    let dy = values(g.y_len(), seed + 2);
    let (mut y, mut y_ref) = (vec![0.0; g.y_len()], vec![0.0; g.y_len()]);
    let (mut dx, mut dx_ref) = (vec![0.0; g.x_len()], vec![0.0; g.x_len()]);
    let (mut dw, mut dw_ref) = (vec![0.0; g.w_len()], vec![0.0; g.w_len()]);
    conv::forward(g, &x, &w, &mut y).map_err(|e| e.to_string())?;
    conv::backward_input(g, &dy, &w, &mut dx).map_err(|e| e.to_string())?;
    conv::backward_weight(g, &x, &dy, &mut dw).map_err(|e| e.to_string())?;
    reference::conv_forward(g, &x, &w, &mut y_ref).map_err(|e| e.to_string())?;
    reference::conv_backward_input(g, &dy, &w, &mut dx_ref).map_err(|e| e.to_string())?;
    reference::conv_backward_weight(g, &x, &dy, &mut dw_ref).map_err(|e| e.to_string())?;
    for (what, a, b) in [
        ("y", &y_ref, &y),
        ("dx", &dx_ref, &dx),
        ("dw", &dw_ref, &dw),
    ] {
        let d = rel(a, b);
        if d > 1e-4 {
            return Err(format!("{what} differs by {d:e} on {g:?}"));
        }
    }
    Ok(())
}

#[test]
fn interleaved_shapes_on_shared_threads_match_the_reference() {
    // every convolution of the gradient-check suite's layers (mnas-28 ops at 9x9)
    let mut shapes = Vec::new();
    for k in [3, 5, 7] {
        for st in [1, 2] {
            let out = (9 + 2 * (k / 2) - k) / st + 1;
            for (cin, cout) in [(6, 10), (8, 8)] {
                shapes.push(geom(3, cin, cout, 9, k, st, 1));
                shapes.push(geom(3, cin, cout, 9, 1, st, 1));
                for m in [cin, cin * 3, cin * 6] {
                    shapes.push(geom(3, cin, m, 9, 1, 1, 1));
                    shapes.push(geom(3, m, m, 9, k, st, m));
                    shapes.push(geom(3, m, cout, out, 1, 1, 1));
                }
            }
        }
    }
    let shapes = &shapes;
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let mut bad = Vec::new();
                    for round in 0..shapes.len() {
                        let g = &shapes[(round * (2 * t + 1) + t * 7) % shapes.len()];
                        if let Err(e) = check(g, round + t) {
                            bad.push(e);
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
