//! Tests of the FNAS strategy (a child module of `fnas`, in the library's test binary).

use std::collections::HashMap;
use std::time::Instant;

use fnas_core::strategy::{Outcome, Proposal, Strategy};
use fnas_core::{Architecture, SearchSpace};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::critic::{Critic, CriticConfig};
use crate::ppo::{PpoConfig, PpoController, Sample};

/// Synthetic NB201 reward: the fraction of edges set to op 2 (optimum 1: all op 2).
fn frac_op2(a: &Architecture) -> f64 {
    a.0.iter().filter(|&&c| c == 2).count() as f64 / a.0.len() as f64
}

fn nb201() -> SearchSpace {
    SearchSpace::nas_bench_201()
}

/// A random additive NB201 reward in [0, 1] (one table value per edge and op), and its
/// optimum.
fn additive(seed: u64) -> (impl Fn(&Architecture) -> f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    let table: Vec<f64> = (0..30).map(|_| rng.random::<f64>()).collect();
    let best: f64 = table
        .chunks(5)
        .map(|t| t.iter().cloned().fold(0.0, f64::max))
        .sum::<f64>()
        / 6.0;
    let f = move |a: &Architecture| -> f64 {
        a.0.iter()
            .enumerate()
            .map(|(e, &c)| table[e * 5 + c as usize])
            .sum::<f64>()
            / 6.0
    };
    (f, best)
}

type RewardFn = Box<dyn Fn(&Architecture) -> f64>;

/// A non-additive NB201 reward: the additive table plus an interaction table per pair of
/// consecutive edges (half the weight), scaled to [0, 1]; its optimum by enumeration.
fn pairwise_reward(seed: u64) -> (RewardFn, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 200);
    let single: Vec<f64> = (0..30).map(|_| rng.random::<f64>()).collect();
    let pair: Vec<f64> = (0..125).map(|_| rng.random::<f64>()).collect();
    let f = move |a: &Architecture| -> f64 {
        let c = &a.0;
        let s: f64 = c
            .iter()
            .enumerate()
            .map(|(e, &x)| single[e * 5 + x as usize])
            .sum();
        let p: f64 = (0..5)
            .map(|e| pair[e * 25 + c[e] as usize * 5 + c[e + 1] as usize])
            .sum();
        (s + 0.5 * p) / 8.5
    };
    let best = (0..15625u32)
        .map(|k| {
            let a = Architecture((0..6).map(|e| ((k / 5u32.pow(e)) % 5) as u16).collect());
            f(&a)
        })
        .fold(f64::NEG_INFINITY, f64::max);
    (Box::new(f), best)
}

/// What a simulated search did.
#[derive(Debug, Default)]
struct Sim {
    proposals: u64,
    cost: u64,
    best: f64,
    /// Cost when the target was first evaluated.
    hit: Option<u64>,
    /// Evaluated proposals that had a prediction: (|error|, inside mean +- 2 std).
    calib: Vec<(f64, bool)>,
    /// Trusted predictions: (predicted, truth).
    trusted: Vec<(f64, f64)>,
    all: Vec<Proposal>,
}

/// The search loop in miniature (as `fnas_core::search::run_search`): an architecture
/// evaluated before is served from the cache at cost 0, a trusted prediction is its
/// reward at cost 0, anything else is evaluated at cost 1; stops when `budget` is spent
/// or after 4x budget proposals.
fn simulate(
    s: &mut dyn Strategy,
    truth: &dyn Fn(&Architecture) -> f64,
    budget: u64,
    batch: usize,
    target: f64,
) -> Sim {
    let mut cache: HashMap<Architecture, f64> = HashMap::new();
    let mut sim = Sim {
        best: f64::NEG_INFINITY,
        ..Sim::default()
    };
    while sim.cost < budget && sim.proposals < 4 * budget {
        let n = (budget - sim.cost).min(batch as u64) as usize;
        let props = s.ask(n).unwrap();
        sim.proposals += props.len() as u64;
        let mut outs = Vec::new();
        for p in &props {
            let (reward, evaluated) = if let Some(&r) = cache.get(&p.arch) {
                (r, true)
            } else if let Some(pr) = p.prediction.filter(|pr| pr.trusted) {
                sim.trusted.push((pr.mean, truth(&p.arch)));
                (pr.mean, false)
            } else {
                let r = truth(&p.arch);
                sim.cost += 1;
                cache.insert(p.arch.clone(), r);
                sim.best = sim.best.max(r);
                if r >= target && sim.hit.is_none() {
                    sim.hit = Some(sim.cost);
                }
                if let Some(pr) = p.prediction {
                    sim.calib
                        .push(((pr.mean - r).abs(), (pr.mean - r).abs() <= 2.0 * pr.std));
                }
                (r, true)
            };
            outs.push(Outcome {
                arch: p.arch.clone(),
                reward: Some(reward),
                log_prob: p.log_prob,
                evaluated,
            });
        }
        s.tell(&outs).unwrap();
        sim.all.extend(props);
    }
    sim
}

#[test]
fn importance_weight_is_the_truncated_ratio() {
    let w = |pi: f64, mu: f64, c: f64| importance_weight(pi.ln(), mu.ln(), c, true);
    // ratio 2 > c = 1: truncated
    assert!((w(0.2, 0.1, 1.0) - 1.0).abs() < 1e-12);
    // ratio 2 < c = 3: kept
    assert!((w(0.2, 0.1, 3.0) - 2.0).abs() < 1e-12);
    // ratio 0.5 < 1: kept (down-weighted)
    assert!((w(0.05, 0.1, 1.0) - 0.5).abs() < 1e-12);
    assert!((w(0.001, 0.1, 1.0) - 0.01).abs() < 1e-12);
    // equal policies
    assert_eq!(importance_weight(-3.0, -3.0, 1.0, true), 1.0);
    // an enormous ratio is c, not infinity; a vanishing one is 0
    assert_eq!(importance_weight(0.0, -1e6, 1.5, true), 1.5);
    assert_eq!(importance_weight(-1e6, 0.0, 1.0, true), 0.0);
    // correction off: always 1
    for (pi, mu) in [(0.2, 0.1), (0.05, 0.1), (0.1, 0.1)] {
        assert_eq!(importance_weight(f64::ln(pi), f64::ln(mu), 1.0, false), 1.0);
    }
}

fn archs3() -> [Architecture; 3] {
    [
        Architecture(vec![2, 2, 2, 2, 2, 2]),
        Architecture(vec![0, 1, 3, 4, 0, 1]),
        Architecture(vec![4, 4, 1, 0, 3, 3]),
    ]
}

#[test]
fn weighted_ppo_loss_moves_log_prob_with_the_advantage_and_ignores_weight_zero() {
    let cfg = PpoConfig {
        entropy_coef: 0.0,
        ..PpoConfig::default()
    };
    let mut c = PpoController::new(nb201(), cfg, 7);
    let [a, b, z] = archs3();
    let old: Vec<f32> = [&a, &b, &z]
        .iter()
        .map(|x| c.log_prob_cpu(x).unwrap() as f32)
        .collect();
    fn sample<'a>(old: &[f32], i: usize, arch: &'a Architecture, adv: f32, w: f32) -> Sample<'a> {
        Sample {
            tokens: arch.choices(),
            old_logp: old[i],
            advantage: adv,
            weight: w,
        }
    }
    // the weight-0 sample's own term contributes nothing, whatever its advantage ...
    let g_pos = c.loss_gradient(&[
        sample(&old, 0, &a, 1.0, 0.5),
        sample(&old, 1, &b, -1.0, 2.0),
        sample(&old, 2, &z, 5.0, 0.0),
    ]);
    let g_neg = c.loss_gradient(&[
        sample(&old, 0, &a, 1.0, 0.5),
        sample(&old, 1, &b, -1.0, 2.0),
        sample(&old, 2, &z, -5.0, 0.0),
    ]);
    assert_eq!(g_pos, g_neg);
    // ... so the gradient is that of the other two, rescaled by the batch size (2/3)
    let g_two = c.loss_gradient(&[
        sample(&old, 0, &a, 1.0, 0.5),
        sample(&old, 1, &b, -1.0, 2.0),
    ]);
    let max_abs = g_two.iter().fold(0f32, |m, g| m.max(g.abs()));
    assert!(max_abs > 0.0);
    for (x, y) in g_pos.iter().zip(&g_two) {
        assert!((x - y * 2.0 / 3.0).abs() <= 1e-5 * max_abs, "{x} vs {y}");
    }
    // all weights 0: no gradient at all (entropy off)
    let g0 = c.loss_gradient(&[
        sample(&old, 0, &a, 1.0, 0.0),
        sample(&old, 1, &b, -1.0, 0.0),
    ]);
    assert!(g0.iter().all(|g| *g == 0.0));
    // a weighted update raises the positive-advantage sample, lowers the negative one
    let before = c.log_probs(&[a.clone(), b.clone()]).unwrap();
    let samples = [
        sample(&old, 0, &a, 1.0, 0.5),
        sample(&old, 1, &b, -1.0, 2.0),
    ];
    c.learn(&samples, 2);
    let after = c.log_probs(&[a.clone(), b.clone()]).unwrap();
    assert!(
        after[0] > before[0] + 1e-3,
        "A {} -> {}",
        before[0],
        after[0]
    );
    assert!(
        after[1] < before[1] - 1e-3,
        "B {} -> {}",
        before[1],
        after[1]
    );
    // with the weights swapped, the sample with weight 2 moves more than with 0.5
    let mut c2 = PpoController::new(nb201(), PpoConfig::default(), 7);
    c2.learn(
        &[
            sample(&old, 0, &a, 1.0, 2.0),
            sample(&old, 1, &b, -1.0, 0.5),
        ],
        2,
    );
    let after2 = c2.log_probs(&[a, b]).unwrap();
    assert!(after2[0] - before[0] > after[0] - before[0]);
}

#[test]
fn gate_rule_trusts_only_confident_predictions_below_the_incumbent() {
    let tau = 0.15;
    // confident and clearly worse than the incumbent: trusted
    assert!(would_trust(0.5, 0.01, 0.05, tau, Some(0.8)));
    // uncertain: evaluated
    assert!(!would_trust(0.5, 0.01, 0.2, tau, Some(0.8)));
    assert!(!would_trust(0.5, 0.01, tau, tau, Some(0.8)));
    // might beat the incumbent (mean + 2 std >= best): evaluated
    assert!(!would_trust(0.79, 0.01, 0.05, tau, Some(0.8)));
    assert!(!would_trust(0.71, 0.05, 0.05, tau, Some(0.8)));
    assert!(!would_trust(0.9, 0.0, 0.0, tau, Some(0.8)));
    // nothing evaluated yet: trust nothing
    assert!(!would_trust(0.0, 0.0, 0.0, tau, None));
    // with trust_contenders, a confident prediction above the best is trusted too
    assert!(would_trust_confident(0.05, tau, Some(0.8)));
    assert!(!would_trust_confident(tau, tau, Some(0.8)));
    assert!(!would_trust_confident(0.0, tau, None));
}

#[test]
fn audit_fraction_is_respected_and_uncertain_samples_take_no_draw() {
    let mut s = FnasStrategy::new(nb201(), FnasConfig::default(), 3);
    s.ex.best = Some(1.0);
    let n = 20_000;
    let trusted = (0..n).filter(|_| s.decide(0.2, 0.01, 0.01)).count();
    let audited = n - trusted;
    let frac = audited as f64 / n as f64;
    // binomial(20000, 0.1): std 0.0021
    assert!((frac - 0.1).abs() < 0.01, "audit fraction {frac}");
    assert_eq!(s.stats().audited as usize, audited);
    assert_eq!(s.stats().trusted as usize, trusted);
    // uncertain or promising samples are evaluated without touching the RNG
    let rng = s.ex.rng.clone();
    assert!(!s.decide(0.2, 0.01, 0.5));
    assert!(!s.decide(0.99, 0.01, 0.01));
    assert_eq!(s.ex.rng, rng);
    // gate off: never trusted
    let mut off = FnasStrategy::new(
        nb201(),
        FnasConfig {
            gate: false,
            ..FnasConfig::default()
        },
        3,
    );
    off.ex.best = Some(1.0);
    assert!((0..100).all(|_| !off.decide(0.2, 0.01, 0.01)));
}

/// With `gate_after_calibration` the gate trusts nothing before its std is calibrated
/// (the raw ensemble std is too small on noisy rewards); without it, or with `calibrate`
/// off, it trusts on the raw std.
#[test]
fn gate_after_calibration_trusts_nothing_until_the_std_is_calibrated() {
    for trust_contenders in [false, true] {
        let cfg = FnasConfig {
            audit: 0.0,
            trust_contenders,
            gate_after_calibration: true,
            ..FnasConfig::default()
        };
        let mut s = FnasStrategy::new(nb201(), cfg.clone(), 3);
        s.ex.best = Some(1.0);
        let rng = s.ex.rng.clone();
        // one short of the minimum, and non-finite errors do not count
        s.ex.residuals = vec![1.0; CALIBRATION_MIN_RESIDUALS - 1];
        s.ex.residuals.push(f32::NAN);
        assert!(!s.gate_calibrated());
        assert!(!s.decide(0.2, 0.01, 0.01), "trusted before calibration");
        assert_eq!(s.ex.rng, rng, "no audit draw before calibration");
        assert_eq!(s.stats().trusted + s.stats().audited, 0);
        s.ex.residuals.push(1.0);
        assert!(s.gate_calibrated());
        assert!(s.decide(0.2, 0.01, 0.01), "not trusted once calibrated");

        let mut raw = FnasStrategy::new(
            nb201(),
            FnasConfig {
                calibrate: false,
                ..cfg
            },
            3,
        );
        raw.ex.best = Some(1.0);
        assert!(raw.gate_calibrated());
        assert!(
            raw.decide(0.2, 0.01, 0.01),
            "calibrate off: the raw std gates"
        );

        let mut default = FnasStrategy::new(
            nb201(),
            FnasConfig {
                audit: 0.0,
                trust_contenders,
                ..FnasConfig::default()
            },
            3,
        );
        default.ex.best = Some(1.0);
        assert!(default.gate_calibrated());
        assert!(
            default.decide(0.2, 0.01, 0.01),
            "default: the raw std gates"
        );
    }
}

#[test]
fn a_trained_critic_is_confident_on_its_data_and_the_gate_follows() {
    // data only on ops 0..=2; ops 3 and 4 are never seen
    let space = nb201();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut critic = Critic::new(&space, CriticConfig::default(), 1);
    let arch = |rng: &mut ChaCha8Rng, hi: u16| {
        Architecture(
            (0..6)
                .map(|_| rng.random_range(0..hi))
                .collect::<Vec<u16>>(),
        )
    };
    for _ in 0..300 {
        let a = arch(&mut rng, 3);
        critic.add(&a, frac_op2(&a));
    }
    for _ in 0..20 {
        critic.fit();
    }
    let near: Vec<Architecture> = (0..200).map(|_| arch(&mut rng, 3)).collect();
    let far: Vec<Architecture> = (0..200)
        .map(|_| Architecture((0..6).map(|_| rng.random_range(3..5)).collect()))
        .collect();
    let mean_std = |v: &[Architecture]| {
        v.iter().map(|a| critic.predict(a).std_z).sum::<f64>() / v.len() as f64
    };
    let quant = |v: &[Architecture]| {
        let mut s: Vec<f64> = v.iter().map(|a| critic.predict(a).std_z).collect();
        s.sort_by(f64::total_cmp);
        [0.1, 0.5, 0.9].map(|q| s[((s.len() - 1) as f64 * q) as usize])
    };
    eprintln!(
        "std_z deciles 1/5/9: near {:.3?} far {:.3?}",
        quant(&near),
        quant(&far)
    );
    let (sn, sf) = (mean_std(&near), mean_std(&far));
    eprintln!("mean std_z: near the data {sn:.3}, far from it {sf:.3}");
    assert!(sf > 2.0 * sn, "near {sn} far {sf}");
    // a strict threshold separates them completely (the default, 0.4, lets part of the
    // far ones through: their predictions are then below the incumbent by 2 std)
    let tau = 0.15;
    let trusted = |v: &[Architecture]| {
        v.iter()
            .filter(|a| {
                let p = critic.predict(a);
                would_trust(p.mean, p.std, p.std_z, tau, Some(1.0))
            })
            .count()
    };
    let (tn, tf) = (trusted(&near), trusted(&far));
    eprintln!("trusted: {tn}/200 near, {tf}/200 far");
    assert!(tn > 100, "near {tn}");
    assert!(tf < 20, "far {tf}");
}

#[test]
fn with_every_module_off_it_is_vanilla_ppo() {
    let mut fnas = FnasStrategy::new(nb201(), FnasConfig::vanilla(), 5);
    let mut ppo = PpoController::new(nb201(), PpoConfig::default(), 5);
    let (f, _) = additive(5);
    let a = simulate(&mut fnas, &f, 120, 8, 2.0);
    let b = simulate(&mut ppo, &f, 120, 8, 2.0);
    assert_eq!(a.all.len(), b.all.len());
    assert_eq!(a.all, b.all);
    assert!(a.all.iter().all(|p| p.prediction.is_none()));
    assert_eq!(fnas.controller().updates(), ppo.updates());
    assert_eq!(fnas.ppo.state().unwrap(), ppo.state().unwrap());
    // the default config (full FNAS) differs once the critic and buffer are in use
    let mut full = FnasStrategy::new(nb201(), FnasConfig::default(), 5);
    let c = simulate(&mut full, &f, 120, 8, 2.0);
    assert_ne!(a.all, c.all);
}

#[test]
fn restore_continues_exactly_with_critic_gate_and_buffer() {
    let (f, _) = additive(1);
    let mut a = FnasStrategy::new(nb201(), FnasConfig::default(), 11);
    simulate(&mut a, &f, 80, 8, 2.0);
    assert!(a.buffer_len() > 0 && a.stats().scored > 0);
    let saved = a.state().unwrap();
    let next_a = simulate(&mut a, &f, 60, 8, 2.0);
    let mut b = FnasStrategy::new(nb201(), FnasConfig::default(), 999);
    b.restore(&saved).unwrap();
    let next_b = simulate(&mut b, &f, 60, 8, 2.0);
    assert!(next_a.all.iter().any(|p| p.prediction.is_some()));
    assert_eq!(next_a.all, next_b.all); // architectures, log-probs and predictions
    assert_eq!(a.state().unwrap(), b.state().unwrap());
    // a state of another space, or with the critic off, is refused
    let mut other = FnasStrategy::new(SearchSpace::nas_bench_graph(), FnasConfig::default(), 1);
    assert!(other.restore(&saved).is_err());
    let mut vanilla = FnasStrategy::new(nb201(), FnasConfig::vanilla(), 1);
    assert!(vanilla.restore(&saved).is_err());
    assert!(vanilla.restore(b"{").is_err());
}

#[test]
fn transfer_pretrains_the_critic_and_lets_it_start_early() {
    let space = nb201();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // a source task on another scale: same ranking, z-scored
    let src: Vec<Architecture> = (0..400).map(|_| space.sample(&mut rng)).collect();
    let raw: Vec<f64> = src.iter().map(|a| 40.0 + 10.0 * frac_op2(a)).collect();
    let z = crate::critic::zscores(&raw);
    let mut pts: Vec<(Architecture, f64)> = src.into_iter().zip(z).collect();
    pts.push((Architecture(vec![9, 9, 9, 9, 9, 9]), 0.0)); // not of this space
    pts.push((Architecture(vec![0; 6]), f64::NAN));
    let s = FnasStrategy::with_transfer(space.clone(), FnasConfig::default(), 2, &[pts]);
    assert_eq!(s.stats().transferred, 400);
    assert_eq!(s.stats().transfer_rejected, 2);
    let c = s.critic().unwrap();
    assert_eq!((c.transferred_points(), c.own_points()), (400, 0));
    // the pre-trained critic ranks the target task's architectures
    let (lo, hi) = (Architecture(vec![0; 6]), Architecture(vec![2; 6]));
    assert!(c.predict_z(&hi).0 > c.predict_z(&lo).0 + 1.0);
    // it is usable after min_own_points (8) own points instead of min_points (32)
    let mut s = s;
    let t = |a: &Architecture| 0.5 + 0.3 * frac_op2(a);
    simulate(&mut s, &t, 8, 8, 2.0);
    assert_eq!(s.critic().unwrap().own_points(), 8);
    let props = s.ask(8).unwrap();
    assert!(props.iter().any(|p| p.prediction.is_some()));
    let mut plain = FnasStrategy::new(space, FnasConfig::default(), 2);
    simulate(&mut plain, &t, 8, 8, 2.0);
    assert!(plain.ask(8).unwrap().iter().all(|p| p.prediction.is_none()));
}

#[test]
fn transfer_weighs_a_far_source_down() {
    let space = nb201();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let source = |sign: f64, rng: &mut ChaCha8Rng| -> Vec<(Architecture, f64)> {
        let archs: Vec<Architecture> = (0..300).map(|_| space.sample(rng)).collect();
        let raw: Vec<f64> = archs.iter().map(|a| sign * frac_op2(a)).collect();
        archs
            .into_iter()
            .zip(crate::critic::zscores(&raw))
            .collect()
    };
    // source 0 ranks as the target does, source 1 the other way round
    let sources = vec![source(1.0, &mut rng), source(-1.0, &mut rng)];
    let mut s = FnasStrategy::with_transfer(space.clone(), FnasConfig::default(), 3, &sources);
    assert!(
        s.source_weights().is_empty(),
        "no weights before own points"
    );
    let t = |a: &Architecture| 0.5 + 0.3 * frac_op2(a);
    simulate(&mut s, &t, 16, 8, 2.0);
    let w = s.source_weights().to_vec();
    assert_eq!(w.len(), 2);
    assert!(w[0] == 1.0 && w[1] == 0.0, "weights {w:?}");
    // the weights are part of the state; the source models are rebuilt
    let state = s.state().unwrap();
    let mut r = FnasStrategy::with_transfer(space.clone(), FnasConfig::default(), 3, &sources);
    r.restore(&state).unwrap();
    assert_eq!(r.source_weights(), &w[..]);
    assert_eq!(r.ask(8).unwrap(), s.ask(8).unwrap());
    // pooled (weighting off): every source counts alike
    let pooled = FnasConfig {
        transfer_weighting: false,
        ..FnasConfig::default()
    };
    let mut p = FnasStrategy::with_transfer(space, pooled, 3, &sources);
    simulate(&mut p, &t, 16, 8, 2.0);
    assert!(p.source_weights().is_empty());
}

#[test]
fn config_round_trips_through_json_with_defaults() {
    let c: FnasConfig = serde_json::from_str(r#"{"tau": 0.3, "critic": null}"#).unwrap();
    assert_eq!(c.tau, 0.3);
    assert!(c.critic.is_none());
    assert_eq!(c.audit, 0.1);
    assert_eq!(c.ppo, PpoConfig::default());
    let text = serde_json::to_string(&FnasConfig::default()).unwrap();
    assert_eq!(
        serde_json::from_str::<FnasConfig>(&text).unwrap(),
        FnasConfig::default()
    );
}

#[test]
fn full_fnas_finds_the_synthetic_optimum_evaluating_fewer_than_it_proposes() {
    let t0 = Instant::now();
    for seed in 0..2 {
        let mut s = FnasStrategy::new(nb201(), FnasConfig::default(), seed);
        let sim = simulate(&mut s, &frac_op2, 150, 8, 1.0);
        let st = s.stats().clone();
        let cover = sim.calib.iter().filter(|c| c.1).count() as f64 / sim.calib.len() as f64;
        let err_trusted = sim.trusted.iter().map(|(p, t)| (p - t).abs()).sum::<f64>()
            / sim.trusted.len().max(1) as f64;
        eprintln!(
            "seed {seed}: {} proposals, {} evaluated, best {:.3} (optimum at cost {:?}); \
             {st:?}; coverage {cover:.2}; trusted mean |err| {err_trusted:.3}",
            sim.proposals, sim.cost, sim.best, sim.hit
        );
        assert!(sim.best >= 5.0 / 6.0, "seed {seed}: best {}", sim.best);
        assert!(st.trusted > 0, "seed {seed}: the gate trusted nothing");
        assert!(
            (sim.cost as f64) < 0.8 * sim.proposals as f64,
            "seed {seed}: {} evaluations of {} proposals",
            sim.cost,
            sim.proposals
        );
        // a trusted prediction never hid a winner: every trusted one is truly below best
        assert!(sim.trusted.iter().all(|&(_, t)| t < 1.0));
    }
    eprintln!("2 searches in {:.2}s", t0.elapsed().as_secs_f64());
}

/// Speed of a 500-evaluation FNAS search (batches of 8) and of the critic's `fit` at
/// 500 points: `cargo test --release -p fnas-learn -- --ignored --nocapture speed_of_a_500`.
#[test]
#[ignore]
fn speed_of_a_500_evaluation_fnas_search() {
    for space in [SearchSpace::nas_bench_graph_proteins(), nb201()] {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let w: Vec<f64> = (0..200).map(|_| rng.random::<f64>()).collect();
        let truth = |a: &Architecture| {
            a.0.iter()
                .enumerate()
                .map(|(i, &c)| w[(i * 7 + c as usize) % 200])
                .sum::<f64>()
                / a.0.len() as f64
        };
        for (name, cfg) in [
            ("vanilla", FnasConfig::vanilla()),
            ("full", FnasConfig::default()),
        ] {
            let mut s = FnasStrategy::new(space.clone(), cfg, 1);
            let t = Instant::now();
            let sim = simulate(&mut s, &truth, 500, 8, 2.0);
            let secs = t.elapsed().as_secs_f64();
            let state = s.state().unwrap().len();
            eprintln!(
                "{} {name}: {secs:.2}s for {} proposals / {} evaluations, {} updates, state {state} bytes; {:?}",
                space.name(),
                sim.proposals,
                sim.cost,
                s.controller().updates(),
                s.stats()
            );
        }
        let mut c = Critic::new(&space, CriticConfig::default(), 1);
        for _ in 0..500 {
            let a = space.sample(&mut rng);
            c.add(&a, truth(&a));
        }
        c.fit();
        let t = Instant::now();
        for _ in 0..20 {
            c.fit();
        }
        let fit_ms = t.elapsed().as_secs_f64() * 1e3 / 20.0;
        let t = Instant::now();
        let a = space.sample(&mut rng);
        for _ in 0..1000 {
            std::hint::black_box(c.predict(&a));
        }
        let pred_us = t.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "{}: critic fit at 500 points {fit_ms:.2} ms, predict {pred_us:.1} us",
            space.name()
        );
    }
}

/// The ablation in miniature on noisy additive NB201 rewards: per variant, median cost
/// to evaluate the optimum, proposals, trusted fraction, calibration.
/// `cargo test --release -p fnas-learn -- --ignored --nocapture synthetic_ablation`.
#[test]
#[ignore]
fn synthetic_ablation() {
    let taus: Vec<f64> = std::env::var("FNAS_TAUS")
        .ok()
        .map(|v| v.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or_else(|| vec![FnasConfig::default().tau]);
    let seeds: u64 = std::env::var("FNAS_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let base = FnasConfig::vanilla();
    let critic = Some(CriticConfig::default());
    let mut variants: Vec<(String, FnasConfig)> = vec![
        ("vanilla".into(), base.clone()),
        (
            "critic value".into(),
            FnasConfig {
                critic: critic.clone(),
                critic_value: true,
                ..base.clone()
            },
        ),
        (
            "critic value (policy mean)".into(),
            FnasConfig {
                critic: critic.clone(),
                critic_value: true,
                value_baseline: ValueBaseline::PolicyMean,
                ..base.clone()
            },
        ),
        (
            "replay".into(),
            FnasConfig {
                replay: true,
                ..base.clone()
            },
        ),
        (
            "replay+corr".into(),
            FnasConfig {
                replay: true,
                correction: true,
                ..base.clone()
            },
        ),
    ];
    for &tau in &taus {
        variants.push((
            format!("gate tau {tau}"),
            FnasConfig {
                critic: critic.clone(),
                gate: true,
                tau,
                ..base.clone()
            },
        ));
        variants.push((
            format!("full (V(a)) tau {tau}"),
            FnasConfig {
                tau,
                value_baseline: ValueBaseline::Architecture,
                ..FnasConfig::default()
            },
        ));
        variants.push((
            format!("full (policy mean) tau {tau}"),
            FnasConfig {
                tau,
                value_baseline: ValueBaseline::PolicyMean,
                ..FnasConfig::default()
            },
        ));
        variants.push((
            format!("full (EMA) tau {tau}"),
            FnasConfig {
                tau,
                critic_value: false,
                ..FnasConfig::default()
            },
        ));
    }
    let only = std::env::var("FNAS_ONLY").unwrap_or_default();
    let pairwise = std::env::var("FNAS_PAIRWISE").is_ok();
    for (name, cfg) in variants {
        if !only.split(',').any(|o| name.contains(o)) {
            continue;
        }
        let t = Instant::now();
        let mut hits = Vec::new();
        let (mut props, mut trusted, mut cover, mut n_cal, mut tr_err) = (0, 0, 0.0, 0, 0.0);
        for seed in 0..seeds {
            let (f, best) = if pairwise {
                pairwise_reward(seed)
            } else {
                let (f, best) = additive(seed);
                (Box::new(f) as RewardFn, best)
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed + 7);
            let noisy = move |a: &Architecture| {
                let z = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                (f(a) + 0.02 * z, f(a))
            };
            // the noise is fixed per architecture (the cache serves repeats)
            let noisy = std::cell::RefCell::new(noisy);
            let truth = |a: &Architecture| (noisy.borrow_mut())(a).0;
            let mut s = FnasStrategy::new(nb201(), cfg.clone(), seed);
            // target: the optimum's (noisy) value can be below `best`; count a hit
            // at 99% of the optimum
            let sim = simulate(&mut s, &truth, 500, 8, 0.99 * best);
            hits.push(sim.hit.unwrap_or(1000) as f64);
            props += sim.proposals;
            trusted += s.stats().trusted;
            cover += sim.calib.iter().filter(|c| c.1).count() as f64;
            n_cal += sim.calib.len();
            tr_err += sim.trusted.iter().map(|(p, t)| (p - t).abs()).sum::<f64>();
        }
        hits.sort_by(f64::total_cmp);
        let q = |p: f64| hits[((hits.len() - 1) as f64 * p).round() as usize];
        eprintln!(
            "{name:>16}: cost to 99% of optimum median {:.0} (IQR {:.0}-{:.0}); {:.0} proposals/seed, {:.0}% trusted, coverage {:.2}, trusted |err| {:.4}  [{:.1}s]",
            q(0.5),
            q(0.25),
            q(0.75),
            props as f64 / seeds as f64,
            100.0 * trusted as f64 / props as f64,
            cover / n_cal.max(1) as f64,
            tr_err / trusted.max(1) as f64,
            t.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn calibration_scale_is_the_95th_percentile_over_1_96_within_bounds() {
    use super::{calibration_scale, CALIBRATION_MIN_RESIDUALS};
    // too few residuals: no correction yet
    assert_eq!(
        calibration_scale(&[5.0; CALIBRATION_MIN_RESIDUALS - 1]),
        1.0
    );
    // errors three times the raw std at the 95th percentile: std scaled by 3
    let mut r = vec![0.5f32; 95];
    r.extend([3.0 * 1.96; 5]);
    r[94] = 3.0 * 1.96;
    let s = calibration_scale(&r);
    assert!((s - 3.0).abs() < 1e-5, "{s}");
    // a well-calibrated Gaussian critic gets ~1
    let normal: Vec<f32> = (1..=1000)
        .map(|i| {
            // |z| quantiles of a standard normal, by a coarse inverse: q95(|z|) = 1.96
            let p = i as f64 / 1001.0;
            (1.96 * p / 0.95).min(1.96 + (p - 0.95).max(0.0) * 20.0) as f32
        })
        .collect();
    assert!((calibration_scale(&normal) - 1.0).abs() < 0.02);
    // clamped on both sides; non-finite residuals ignored
    assert_eq!(calibration_scale(&[1000.0; 40]), 20.0);
    assert_eq!(calibration_scale(&[0.0; 40]), 0.5);
    let mut with_nan = vec![f32::NAN; 10];
    with_nan.extend([1.96f32; 20]);
    assert!((calibration_scale(&with_nan) - 1.0).abs() < 1e-6);
}

#[test]
fn screen_order_ranks_scores_then_the_unscored_in_draw_order() {
    let s = [
        Some(0.2),
        None,
        Some(0.9),
        Some(f64::NAN),
        Some(0.9),
        Some(-1.0),
        None,
    ];
    assert_eq!(screen_order(&s, 4), vec![2, 4, 0, 5]);
    assert_eq!(screen_order(&s, 7), vec![2, 4, 0, 5, 1, 3, 6]);
    assert!(screen_order(&s, 0).is_empty());
    assert_eq!(screen_order(&[None, None], 5), vec![0, 1]);
}

#[test]
fn the_screen_keeps_the_best_rated_of_its_draws_once_the_critic_is_usable() {
    let (f, _) = additive(3);
    let off = FnasConfig {
        gate: false,
        ..FnasConfig::default()
    };
    let on = FnasConfig {
        screen: 4,
        ..off.clone()
    };
    // until the critic is usable (32 points) the screen draws what the plain policy does
    let mut s = FnasStrategy::new(nb201(), on, 7);
    let mut plain = FnasStrategy::new(nb201(), off.clone(), 7);
    let a = simulate(&mut s, &f, 24, 8, 2.0);
    let b = simulate(&mut plain, &f, 24, 8, 2.0);
    assert_eq!(a.all, b.all);
    assert_eq!(s.stats().screened_out, 0);
    simulate(&mut s, &f, 24, 8, 2.0);
    assert!(s.usable_critic().is_some());
    let before = s.stats().screened_out;

    // the same state without the screen: its next 32 draws are the screen's candidates
    let mut wide = FnasStrategy::new(nb201(), off, 1);
    wide.restore(&s.state().unwrap()).unwrap();
    let scale = wide.std_scale();
    let drawn = wide.ppo.sample(32).unwrap();
    let c = wide.usable_critic().unwrap();
    let mut seen = wide.ex.seen.clone();
    let mut cands: Vec<(f64, usize)> = drawn
        .iter()
        .enumerate()
        .filter(|(_, (x, _))| seen.insert(wide.canonical(x)))
        .map(|(i, (x, _))| {
            let p = c.predict(x);
            (p.mean + p.std * scale, i)
        })
        .collect();
    cands.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    assert!(
        cands.len() >= 8,
        "nb201 draws repeat too often: {}",
        cands.len()
    );
    let want: Vec<Architecture> = cands[..8]
        .iter()
        .map(|&(_, i)| drawn[i].0.clone())
        .collect();

    let got = s.ask(8).unwrap();
    let got_archs: Vec<Architecture> = got.iter().map(|p| p.arch.clone()).collect();
    assert_eq!(got_archs, want);
    assert!(got.iter().all(|p| p.prediction.is_some()));
    assert_eq!(s.stats().screened_out - before, 24);
    // the log-probabilities are the policy's own, as for an unscreened draw
    for p in &got {
        let lp = s.ppo.log_prob_tokens(&p.arch.0);
        assert!((f64::from(lp) - p.log_prob.unwrap()).abs() < 1e-4);
    }
}
