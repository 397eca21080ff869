//! The dense kernels against the reference loops, on the shapes fnas children use and on
//! the odd ones (1×1 inputs, kernels larger than the input, odd sizes with stride 2).

use fnas_kernels::{dense, reference, ConvGeom, KernelError};

#[allow(clippy::too_many_arguments)]
fn geom(
    batch: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> ConvGeom {
    ConvGeom {
        batch,
        cin,
        cout,
        h,
        w,
        kernel,
        stride,
        pad,
        groups: 1,
    }
}

/// Deterministic values in [-1, 1).
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
fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// The three kernels' outputs, each buffer first filled with garbage so that
/// accumulating into it instead of overwriting shows up.
fn run_dense(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> [Vec<f32>; 3] {
    let mut y = vec![7.0; g.y_len()];
    let mut dx = vec![-3.0; g.x_len()];
    let mut dw = vec![5.0; g.w_len()];
    dense::forward(g, x, w, &mut y).unwrap();
    dense::backward_input(g, dy, w, &mut dx).unwrap();
    dense::backward_weight(g, x, dy, &mut dw).unwrap();
    [y, dx, dw]
}

fn run_reference(g: &ConvGeom, x: &[f32], w: &[f32], dy: &[f32]) -> [Vec<f32>; 3] {
    let mut y = vec![0.0; g.y_len()];
    let mut dx = vec![0.0; g.x_len()];
    let mut dw = vec![0.0; g.w_len()];
    reference::conv_forward(g, x, w, &mut y).unwrap();
    reference::conv_backward_input(g, dy, w, &mut dx).unwrap();
    reference::conv_backward_weight(g, x, dy, &mut dw).unwrap();
    [y, dx, dw]
}

fn inputs(g: &ConvGeom) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (data(g.x_len(), 1), data(g.w_len(), 2), data(g.y_len(), 3))
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn check_against_reference(g: &ConvGeom) {
    let (x, w, dy) = inputs(g);
    let want = run_reference(g, &x, &w, &dy);
    for threads in [1, 2] {
        let got = pool(threads).install(|| run_dense(g, &x, &w, &dy));
        for (name, (a, b)) in ["forward", "backward_input", "backward_weight"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            let e = rel_err(a, b);
            assert!(e <= 1e-4, "{name} on {threads} thread(s), {g:?}: error {e}");
        }
    }
}

/// The shapes of a typical child: stems, 1×1 expansions and projections, 3×3 and 5×5
/// dense convolutions with stride 1 and 2, stride-2 1×1 skips, the head.
#[test]
fn typical_shapes_match_reference() {
    for g in [
        geom(4, 1, 16, 28, 28, 3, 1, 1),  // stem
        geom(4, 1, 32, 28, 28, 3, 2, 1),  // strided stem
        geom(4, 16, 96, 14, 14, 1, 1, 0), // 1×1 expansion
        geom(4, 96, 24, 7, 7, 1, 1, 0),   // 1×1 projection
        geom(3, 16, 24, 14, 14, 3, 1, 1),
        geom(3, 24, 40, 14, 14, 3, 2, 1),
        geom(2, 24, 40, 14, 14, 5, 1, 2),
        geom(2, 40, 40, 14, 14, 5, 2, 2),
        geom(4, 16, 32, 14, 14, 1, 2, 0), // 1×1 stride-2 skip
        geom(3, 96, 128, 7, 7, 1, 1, 0),  // head
    ] {
        check_against_reference(&g);
    }
}

/// Degenerate and odd shapes.
#[test]
fn odd_shapes_match_reference() {
    for g in [
        geom(3, 8, 12, 1, 1, 1, 1, 0), // 1×1 spatial input, 1×1 kernel
        geom(2, 5, 7, 1, 1, 3, 1, 1),  // 1×1 spatial input, padded 3×3
        geom(2, 5, 7, 1, 1, 3, 2, 1),  // ... strided
        geom(3, 5, 7, 9, 9, 3, 1, 1),  // channels not multiples of 8
        geom(1, 3, 5, 6, 6, 3, 1, 1),  // batch 1
        geom(2, 3, 4, 2, 2, 5, 1, 2),  // kernel larger than the input
        geom(2, 3, 4, 2, 2, 5, 2, 2),  // ... strided
        geom(2, 6, 5, 7, 7, 3, 2, 1),  // stride 2 on odd sizes
        geom(2, 6, 5, 9, 9, 5, 2, 2),
        geom(2, 6, 5, 7, 7, 1, 2, 0),  // 1×1 stride 2 on odd size
        geom(2, 3, 4, 5, 3, 3, 2, 1),  // h != w
        geom(2, 3, 4, 4, 7, 2, 1, 0),  // even kernel
        geom(2, 3, 4, 8, 8, 3, 3, 0),  // stride 3
        geom(2, 4, 6, 3, 3, 3, 1, 0),  // kernel covers the whole input (no im2col)
        geom(2, 1, 12, 6, 6, 3, 1, 0), // narrow stride-1 unfolding, unpadded
        geom(2, 2, 24, 5, 6, 3, 1, 1), // narrow stride-1 unfolding, padded
        geom(2, 1, 12, 7, 7, 3, 2, 0), // narrow strided unfolding, unpadded
        geom(2, 4, 6, 4, 4, 1, 1, 2),  // 1×1 kernel with padding
        geom(2, 4, 6, 3, 3, 3, 1, 3),  // padding wider than half the kernel
        geom(5, 3, 4, 6, 6, 3, 1, 1),  // batch not a multiple of the threads
        // 8 or more input channels: the direct AVX-512 kernel where the CPU has it.
        geom(2, 9, 17, 5, 7, 3, 1, 1), // h != w, one lane of a second block
        geom(2, 8, 33, 9, 9, 4, 2, 1), // even kernel, stride 2, odd block count
        geom(2, 8, 5, 3, 3, 3, 1, 3),  // padding wider than the kernel
        geom(3, 12, 20, 11, 13, 7, 2, 3), // wide kernel, stride 2, odd sizes
        geom(5, 16, 16, 30, 29, 5, 1, 2), // one block, long rows
        geom(2, 9, 17, 1, 1, 3, 1, 1), // 1×1 spatial input
        geom(2, 9, 17, 1, 1, 3, 2, 1), // ... strided
        geom(1, 24, 40, 9, 7, 5, 2, 2), // batch 1, channel tails of both tiles
        geom(3, 13, 40, 7, 7, 7, 2, 3), // k7 stride 2 on 7×7, three blocks
        geom(2, 10, 20, 6, 6, 2, 1, 0), // 2×2 kernel, two blocks
        geom(2, 11, 36, 8, 8, 6, 1, 2), // 6×6 kernel
        geom(2, 10, 9, 8, 8, 3, 2, 0), // stride-2 phases, unpadded, even size
        geom(20, 8, 24, 6, 6, 3, 2, 1), // weight-gradient tiles of 16 samples, then 4
        geom(2, 8, 12, 3, 3, 3, 2, 3), // stride-2 phases, padding wider than the kernel
        geom(2, 12, 8, 10, 9, 6, 2, 1), // stride-2 phases, even kernel, odd pad
        geom(13, 8, 12, 7, 7, 1, 1, 0), // grouped 1×1 samples with a remainder group
        geom(9, 20, 6, 1, 1, 1, 1, 0), // one position per sample: the chunk is one product
    ] {
        check_against_reference(&g);
    }
}

/// Pools of 1, 2 and 3 threads give the same results: forward and backward_input do the
/// same per-sample work on any pool (bit for bit); backward_weight only changes the
/// order in which per-chunk sums are added.
#[test]
fn thread_count_does_not_change_results() {
    for g in [
        geom(7, 6, 10, 9, 9, 3, 2, 1),
        geom(8, 16, 24, 7, 7, 1, 1, 0),
        geom(1, 4, 4, 5, 5, 3, 1, 1),
    ] {
        let (x, w, dy) = inputs(&g);
        let one = pool(1).install(|| run_dense(&g, &x, &w, &dy));
        for threads in [2, 3] {
            let many = pool(threads).install(|| run_dense(&g, &x, &w, &dy));
            assert_eq!(one[0], many[0], "forward, {threads} threads, {g:?}");
            assert_eq!(one[1], many[1], "backward_input, {threads} threads, {g:?}");
            let e = rel_err(&many[2], &one[2]);
            assert!(e <= 1e-6, "backward_weight, {threads} threads, {g:?}: {e}");
        }
    }
}

#[test]
fn wrong_buffers_and_shapes_are_errors() {
    let g = geom(2, 3, 4, 5, 5, 3, 1, 1);
    let (x, w, dy) = inputs(&g);
    let mut y = vec![0.0; g.y_len()];
    let mut dx = vec![0.0; g.x_len()];
    let mut dw = vec![0.0; g.w_len()];
    let short = |v: &[f32]| v[..v.len() - 1].to_vec();
    let buffer = |r: Result<(), KernelError>| matches!(r, Err(KernelError::Buffer { .. }));

    assert!(buffer(dense::forward(&g, &short(&x), &w, &mut y)));
    assert!(buffer(dense::forward(&g, &x, &short(&w), &mut y)));
    assert!(buffer(dense::forward(&g, &x, &w, &mut y[1..])));
    assert!(buffer(dense::backward_input(&g, &short(&dy), &w, &mut dx)));
    assert!(buffer(dense::backward_input(&g, &dy, &short(&w), &mut dx)));
    assert!(buffer(dense::backward_input(&g, &dy, &w, &mut dx[1..])));
    assert!(buffer(dense::backward_weight(&g, &short(&x), &dy, &mut dw)));
    assert!(buffer(dense::backward_weight(&g, &x, &short(&dy), &mut dw)));
    assert!(buffer(dense::backward_weight(&g, &x, &dy, &mut dw[1..])));
    let mut long = vec![0.0; g.y_len() + 1];
    assert!(buffer(dense::forward(&g, &x, &w, &mut long)));

    let shape = |r: Result<(), KernelError>| matches!(r, Err(KernelError::Shape(_)));
    // Depthwise shapes are valid convolutions, but not dense ones.
    let dw_g = ConvGeom {
        groups: 4,
        ..geom(2, 4, 4, 5, 5, 3, 1, 1)
    };
    let (x, w, dy) = inputs(&dw_g);
    let mut y = vec![0.0; dw_g.y_len()];
    let mut dx = vec![0.0; dw_g.x_len()];
    let mut dwt = vec![0.0; dw_g.w_len()];
    assert!(shape(dense::forward(&dw_g, &x, &w, &mut y)));
    assert!(shape(dense::backward_input(&dw_g, &dy, &w, &mut dx)));
    assert!(shape(dense::backward_weight(&dw_g, &x, &dy, &mut dwt)));
    // Grouped, zero-sized and kernel-too-large shapes.
    let grouped = ConvGeom {
        groups: 2,
        ..geom(1, 4, 4, 5, 5, 3, 1, 1)
    };
    assert!(shape(dense::forward(&grouped, &[], &[], &mut [])));
    let empty = geom(0, 4, 4, 5, 5, 3, 1, 1);
    assert!(shape(dense::forward(&empty, &[], &[], &mut [])));
    let too_big = geom(1, 1, 1, 2, 2, 5, 1, 1);
    assert!(shape(dense::backward_weight(
        &too_big,
        &[0.0; 4],
        &[],
        &mut [0.0; 25]
    )));
}
