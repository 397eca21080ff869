//! The weight transfer rules of `fnas_child::transfer`, checked exactly on hand-made
//! tensors.

use fnas_child::transfer::{adapt, adapt_part, layer_source, TransferStats};
use fnas_core::pool::PoolTensor;

fn tensor(name: &str, shape: &[usize], data: Vec<f32>) -> PoolTensor {
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>(),
        "test tensor {name}"
    );
    PoolTensor {
        name: name.to_string(),
        shape: shape.to_vec(),
        data,
    }
}

/// Distinct values `start, start + 1, ...`.
fn seq(name: &str, shape: &[usize], start: f32) -> PoolTensor {
    let n: usize = shape.iter().product();
    tensor(name, shape, (0..n).map(|i| start + i as f32).collect())
}

fn fill(name: &str, shape: &[usize], value: f32) -> PoolTensor {
    let n: usize = shape.iter().product();
    tensor(name, shape, vec![value; n])
}

/// Value at `[a, b, c, d]` of a rank-4 tensor.
fn at4(t: &PoolTensor, [a, b, c, d]: [usize; 4]) -> f32 {
    let s = &t.shape;
    t.data[((a * s[1] + b) * s[2] + c) * s[3] + d]
}

#[test]
fn kernel_3x3_to_5x5_zero_pads_around_the_source() {
    let src = seq("w", &[1, 1, 3, 3], 1.0);
    let init = fill("conv.weight", &[1, 1, 5, 5], 7.0);
    let out = adapt(&src, &init);
    assert_eq!(out.name, "conv.weight");
    assert_eq!(out.shape, vec![1, 1, 5, 5]);
    #[rustfmt::skip]
    let expected = vec![
        0.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 1.0, 2.0, 3.0, 0.0,
        0.0, 4.0, 5.0, 6.0, 0.0,
        0.0, 7.0, 8.0, 9.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(out.data, expected);
}

#[test]
fn kernel_7x7_to_3x3_takes_the_centre() {
    let src = seq("w", &[1, 1, 7, 7], 0.0);
    let init = fill("w", &[1, 1, 3, 3], 7.0);
    let out = adapt(&src, &init);
    // Rows and columns 2..5 of the 7x7 source (value = 7 * row + col).
    #[rustfmt::skip]
    let expected = vec![
        16.0, 17.0, 18.0,
        23.0, 24.0, 25.0,
        30.0, 31.0, 32.0,
    ];
    assert_eq!(out.data, expected);
}

#[test]
fn kernel_5x5_to_3x3_takes_the_centre() {
    let src = seq("w", &[1, 1, 5, 5], 0.0);
    let init = fill("w", &[1, 1, 3, 3], 7.0);
    let out = adapt(&src, &init);
    #[rustfmt::skip]
    let expected = vec![
        6.0, 7.0, 8.0,
        11.0, 12.0, 13.0,
        16.0, 17.0, 18.0,
    ];
    assert_eq!(out.data, expected);
}

#[test]
fn more_source_channels_are_sliced() {
    let src = seq("w", &[4, 3, 1, 1], 0.0);
    let init = fill("w", &[2, 2, 1, 1], -1.0);
    let out = adapt(&src, &init);
    // src[o][i] = 3 * o + i.
    assert_eq!(out.data, vec![0.0, 1.0, 3.0, 4.0]);
    assert_eq!(out.shape, vec![2, 2, 1, 1]);
}

#[test]
fn new_channels_keep_init_exactly() {
    let src = seq("w", &[2, 2, 3, 3], 1.0);
    let init = seq("w", &[3, 4, 3, 3], 1000.0);
    let out = adapt(&src, &init);
    for o in 0..3 {
        for i in 0..4 {
            for y in 0..3 {
                for x in 0..3 {
                    let want = if o < 2 && i < 2 {
                        at4(&src, [o, i, y, x])
                    } else {
                        at4(&init, [o, i, y, x])
                    };
                    assert_eq!(at4(&out, [o, i, y, x]), want, "[{o},{i},{y},{x}]");
                }
            }
        }
    }
}

#[test]
fn channels_and_kernel_at_once() {
    // cout 3 -> 2 (slice), cin 2 -> 4 (pad), kernel 3 -> 5 (zero pad).
    let src = seq("w", &[3, 2, 3, 3], 1.0);
    let init = seq("w", &[2, 4, 5, 5], 1000.0);
    let out = adapt(&src, &init);
    assert_eq!(out.shape, vec![2, 4, 5, 5]);
    for o in 0..2 {
        for i in 0..4 {
            for y in 0..5 {
                for x in 0..5 {
                    let got = at4(&out, [o, i, y, x]);
                    let want = if i >= 2 {
                        at4(&init, [o, i, y, x])
                    } else if (1..4).contains(&y) && (1..4).contains(&x) {
                        at4(&src, [o, i, y - 1, x - 1])
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "[{o},{i},{y},{x}]");
                }
            }
        }
    }
}

#[test]
fn channels_and_kernel_crop_at_once() {
    // cout 2 -> 3 (pad), cin 4 -> 2 (slice), kernel 5 -> 3 (centre crop).
    let src = seq("w", &[2, 4, 5, 5], 1.0);
    let init = seq("w", &[3, 2, 3, 3], 1000.0);
    let out = adapt(&src, &init);
    for o in 0..3 {
        for i in 0..2 {
            for y in 0..3 {
                for x in 0..3 {
                    let want = if o < 2 {
                        at4(&src, [o, i, y + 1, x + 1])
                    } else {
                        at4(&init, [o, i, y, x])
                    };
                    assert_eq!(at4(&out, [o, i, y, x]), want, "[{o},{i},{y},{x}]");
                }
            }
        }
    }
}

#[test]
fn depthwise_pads_channels_and_kernel() {
    let src = seq("layers.0.dw.conv.weight", &[4, 1, 3, 3], 1.0);
    let init = seq("layers.0.dw.conv.weight", &[6, 1, 5, 5], 1000.0);
    let out = adapt(&src, &init);
    for c in 0..6 {
        for y in 0..5 {
            for x in 0..5 {
                let want = if c >= 4 {
                    at4(&init, [c, 0, y, x])
                } else if (1..4).contains(&y) && (1..4).contains(&x) {
                    at4(&src, [c, 0, y - 1, x - 1])
                } else {
                    0.0
                };
                assert_eq!(at4(&out, [c, 0, y, x]), want, "[{c},0,{y},{x}]");
            }
        }
    }
}

#[test]
fn depthwise_slices_channels_and_crops_kernel() {
    let src = seq("w", &[6, 1, 5, 5], 0.0);
    let init = fill("w", &[4, 1, 3, 3], 9.0);
    let out = adapt(&src, &init);
    for c in 0..4 {
        for y in 0..3 {
            for x in 0..3 {
                assert_eq!(at4(&out, [c, 0, y, x]), at4(&src, [c, 0, y + 1, x + 1]));
            }
        }
    }
}

#[test]
fn bn_vectors_copy_the_overlap_and_keep_init_for_new_channels() {
    let gamma = adapt(
        &tensor("bn.gamma", &[2], vec![2.0, 3.0]),
        &fill("bn.gamma", &[3], 1.0),
    );
    assert_eq!(gamma.data, vec![2.0, 3.0, 1.0]);
    let beta = adapt(
        &tensor("bn.beta", &[2], vec![0.5, -0.5]),
        &fill("bn.beta", &[3], 0.0),
    );
    assert_eq!(beta.data, vec![0.5, -0.5, 0.0]);
    let mean = adapt(
        &tensor("bn.running_mean", &[2], vec![0.25, 0.75]),
        &fill("bn.running_mean", &[3], 0.0),
    );
    assert_eq!(mean.data, vec![0.25, 0.75, 0.0]);
    let var = adapt(
        &tensor("bn.running_var", &[2], vec![4.0, 9.0]),
        &fill("bn.running_var", &[3], 1.0),
    );
    assert_eq!(var.data, vec![4.0, 9.0, 1.0]);
    let sliced = adapt(
        &tensor("bn.running_var", &[5], vec![1.5, 2.5, 3.5, 4.5, 5.5]),
        &fill("bn.running_var", &[3], 1.0),
    );
    assert_eq!(sliced.data, vec![1.5, 2.5, 3.5]);
    assert_eq!(sliced.shape, vec![3]);
}

#[test]
fn linear_weight_slices_in_and_pads_out() {
    // [in, out]: in 3 -> 2 (slice), out 2 -> 4 (pad, e.g. more classes).
    let src = seq("classifier.weight", &[3, 2], 1.0);
    let init = seq("classifier.weight", &[2, 4], 100.0);
    let out = adapt(&src, &init);
    #[rustfmt::skip]
    let expected = vec![
        1.0, 2.0, 102.0, 103.0,
        3.0, 4.0, 106.0, 107.0,
    ];
    assert_eq!(out.data, expected);
    let bias = adapt(
        &tensor("classifier.bias", &[2], vec![0.5, 0.25]),
        &fill("classifier.bias", &[4], 0.0),
    );
    assert_eq!(bias.data, vec![0.5, 0.25, 0.0, 0.0]);
}

#[test]
fn equal_shapes_copy_exactly() {
    let src = seq("src", &[3, 2, 3, 3], 0.5);
    let init = fill("target", &[3, 2, 3, 3], 1.0);
    let out = adapt(&src, &init);
    assert_eq!(out.name, "target");
    assert_eq!(out.data, src.data);
}

#[test]
fn rank_mismatch_keeps_init() {
    let init = seq("w", &[2, 2], 10.0);
    assert_eq!(adapt(&seq("w", &[4], 0.0), &init), init);
    assert_eq!(adapt(&seq("w", &[2, 2, 1, 1], 0.0), &init), init);
    let conv = seq("w", &[2, 2, 3, 3], 10.0);
    assert_eq!(adapt(&seq("w", &[2, 2, 3], 0.0), &conv), conv);
}

#[test]
fn empty_and_inconsistent_tensors_do_not_panic() {
    let init = seq("w", &[2, 3, 3, 3], 10.0);
    assert_eq!(adapt(&seq("w", &[0, 3, 3, 3], 0.0), &init), init);
    let empty_init = seq("w", &[0], 0.0);
    assert_eq!(adapt(&seq("w", &[2], 0.0), &empty_init), empty_init);
    // Data length not matching the shape: treated as absent.
    let broken = PoolTensor {
        name: "w".to_string(),
        shape: vec![2, 3, 3, 3],
        data: vec![1.0; 5],
    };
    assert_eq!(adapt(&broken, &init), init);
    let (out, stats) = adapt_part(&[], &[]);
    assert!(out.is_empty());
    assert_eq!(stats, TransferStats::default());
}

#[test]
fn layer_source_copies_in_order_then_repeats_the_last() {
    assert_eq!(layer_source(0, 2), 0);
    assert_eq!(layer_source(1, 2), 1);
    assert_eq!(layer_source(2, 2), 1);
    assert_eq!(layer_source(5, 1), 0);
    assert_eq!(layer_source(0, 3), 0);
    assert_eq!(layer_source(0, 0), 0);
}

#[test]
fn extra_target_layer_takes_the_last_source_layer() {
    let src = vec![
        seq("layers.0.conv.conv.weight", &[4, 4, 3, 3], 0.0),
        seq("layers.1.conv.conv.weight", &[4, 4, 3, 3], 1000.0),
    ];
    let init = vec![
        fill("layers.0.conv.conv.weight", &[4, 4, 3, 3], -1.0),
        fill("layers.1.conv.conv.weight", &[4, 4, 3, 3], -1.0),
        fill("layers.2.conv.conv.weight", &[4, 4, 3, 3], -1.0),
    ];
    let (out, stats) = adapt_part(&src, &init);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].name, "layers.0.conv.conv.weight");
    assert_eq!(out[0].data, src[0].data);
    assert_eq!(out[1].data, src[1].data);
    assert_eq!(out[2].name, "layers.2.conv.conv.weight");
    assert_eq!(out[2].data, src[1].data);
    assert_eq!(stats.copied, 3);
    assert_eq!(stats.fresh, 0);
}

#[test]
fn fewer_target_layers_copy_the_leading_source_layers() {
    let src = vec![
        seq("layers.0.dw.bn.gamma", &[2], 1.0),
        seq("layers.1.dw.bn.gamma", &[2], 10.0),
        seq("layers.2.dw.bn.gamma", &[2], 100.0),
    ];
    let init = vec![fill("layers.0.dw.bn.gamma", &[2], 1.0)];
    let (out, _) = adapt_part(&src, &init);
    assert_eq!(out[0].data, vec![1.0, 2.0]);
}

#[test]
fn pw_takes_project_and_project_takes_pw() {
    let mbconv = vec![
        seq("layers.0.project.conv.weight", &[2, 3, 1, 1], 1.0),
        seq("layers.0.project.bn.gamma", &[2], 50.0),
    ];
    let dwsep_init = vec![
        fill("layers.0.pw.conv.weight", &[2, 3, 1, 1], 0.0),
        fill("layers.0.pw.bn.gamma", &[2], 1.0),
    ];
    let (out, stats) = adapt_part(&mbconv, &dwsep_init);
    assert_eq!(out[0].name, "layers.0.pw.conv.weight");
    assert_eq!(out[0].data, mbconv[0].data);
    assert_eq!(out[1].name, "layers.0.pw.bn.gamma");
    assert_eq!(out[1].data, vec![50.0, 51.0]);
    assert_eq!(stats.copied, 2);

    let dwsep = vec![seq("layers.0.pw.conv.weight", &[2, 3, 1, 1], 7.0)];
    let mbconv_init = vec![fill("layers.0.project.conv.weight", &[2, 3, 1, 1], 0.0)];
    let (out, _) = adapt_part(&dwsep, &mbconv_init);
    assert_eq!(out[0].name, "layers.0.project.conv.weight");
    assert_eq!(out[0].data, dwsep[0].data);
}

#[test]
fn own_part_is_preferred_over_its_alias() {
    let src = vec![
        fill("layers.0.project.bn.gamma", &[2], 5.0),
        fill("layers.0.pw.bn.gamma", &[2], 3.0),
    ];
    let init = vec![fill("layers.0.pw.bn.gamma", &[2], 1.0)];
    let (out, _) = adapt_part(&src, &init);
    assert_eq!(out[0].data, vec![3.0, 3.0]);
}

#[test]
fn parts_without_alias_do_not_cross() {
    // `se.expand` is not `expand`, `dw` is not `conv`.
    let src = vec![
        seq("layers.0.se.expand.weight", &[8, 2, 1, 1], 1.0),
        seq("layers.0.dw.conv.weight", &[8, 1, 3, 3], 1.0),
    ];
    let init = vec![
        fill("layers.0.expand.conv.weight", &[8, 2, 1, 1], 0.5),
        fill("layers.0.conv.conv.weight", &[8, 8, 3, 3], 0.5),
        fill("layers.0.se.expand.weight", &[8, 2, 1, 1], 0.5),
    ];
    let (out, stats) = adapt_part(&src, &init);
    assert_eq!(out[0], init[0]);
    assert_eq!(out[1], init[1]);
    assert_eq!(out[2].data, src[0].data);
    assert_eq!(stats.copied, 1);
    assert_eq!(stats.fresh, 2);
}

#[test]
fn part_missing_in_the_source_keeps_init() {
    let src = vec![seq("layers.0.dw.conv.weight", &[4, 1, 3, 3], 1.0)];
    let init = vec![
        seq("layers.0.dw.conv.weight", &[4, 1, 3, 3], 100.0),
        seq("layers.0.se.reduce.weight", &[1, 4, 1, 1], 200.0),
        seq("layers.0.se.reduce.bias", &[1], 300.0),
        seq("layers.0.se.expand.weight", &[4, 1, 1, 1], 400.0),
        seq("layers.0.se.expand.bias", &[4], 500.0),
    ];
    let (out, stats) = adapt_part(&src, &init);
    assert_eq!(out.len(), 5);
    assert_eq!(out[0].data, src[0].data);
    assert_eq!(&out[1..], &init[1..]);
    assert_eq!(stats.copied, 1);
    assert_eq!(stats.fresh, 4);
}

#[test]
fn stem_and_head_match_by_identical_name() {
    let src = vec![
        seq("head.conv.weight", &[8, 4, 1, 1], 1.0),
        seq("head.bn.gamma", &[8], 1.0),
        seq("classifier.weight", &[8, 10], 1.0),
        seq("classifier.bias", &[10], 1.0),
    ];
    let init = vec![
        fill("head.conv.weight", &[8, 4, 1, 1], 0.0),
        fill("head.bn.gamma", &[8], 1.0),
        fill("classifier.weight", &[8, 5], 0.0),
        fill("classifier.bias", &[5], 0.0),
        fill("head.bn.beta", &[8], 0.0),
    ];
    let (out, stats) = adapt_part(&src, &init);
    assert_eq!(out[0].data, src[0].data);
    assert_eq!(out[1].data, src[1].data);
    // Leading 5 of 10 classes: row r takes src values 10 r + 1 .. 10 r + 5.
    let want: Vec<f32> = (0..8)
        .flat_map(|r| (0..5).map(move |c| (10 * r + c + 1) as f32))
        .collect();
    assert_eq!(out[2].data, want);
    assert_eq!(out[3].data, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(out[4], init[4]);
    assert_eq!(stats.copied, 4);
    assert_eq!(stats.fresh, 1);
}

#[test]
fn stats_count_tensors_and_elements() {
    let src = vec![
        seq("layers.0.dw.conv.weight", &[4, 1, 3, 3], 1.0), // -> [6,1,5,5]: 4*9 copied
        seq("layers.0.dw.bn.gamma", &[4], 1.0),             // -> [6]: 4 copied
        seq("layers.0.pw.conv.weight", &[2, 4, 1, 1], 1.0), // rank mismatch below
    ];
    let init = vec![
        fill("layers.0.dw.conv.weight", &[6, 1, 5, 5], 0.5), // 150
        fill("layers.0.dw.bn.gamma", &[6], 1.0),             // 6
        fill("layers.0.pw.conv.weight", &[2, 6], 0.5),       // 12, rank differs: fresh
        fill("layers.0.se.reduce.bias", &[2], 0.0),          // 2, missing: fresh
        fill("layers.1.dw.bn.gamma", &[3], 1.0),             // 3 from layer 0: 3 copied
    ];
    let (out, stats) = adapt_part(&src, &init);
    assert_eq!(out.len(), init.len());
    for (o, i) in out.iter().zip(&init) {
        assert_eq!(o.name, i.name);
        assert_eq!(o.shape, i.shape);
    }
    assert_eq!(
        stats,
        TransferStats {
            copied: 3,
            fresh: 2,
            copied_elements: 36 + 4 + 3,
            total_elements: 150 + 6 + 12 + 2 + 3,
        }
    );
    assert_eq!(out[4].data, vec![1.0, 2.0, 3.0]);

    let mut sum = TransferStats::default();
    sum.merge(stats);
    sum.merge(stats);
    assert_eq!(sum.copied, 6);
    assert_eq!(sum.total_elements, 2 * 173);
}
