//! Tests of the PPO controller (all in the library's test binary: burn links slowly).

use std::time::Instant;

use fnas_core::strategy::{Outcome, Proposal, RandomSearch, Strategy};
use fnas_core::{Architecture, SearchSpace};

use crate::ppo::Sample;
use crate::{PpoConfig, PpoController};

/// Synthetic NB201 reward: the fraction of edges set to op 2.
fn frac_op2(a: &Architecture) -> f64 {
    a.0.iter().filter(|&&c| c == 2).count() as f64 / a.0.len() as f64
}

fn outcomes(props: &[Proposal], reward: impl Fn(&Architecture) -> f64) -> Vec<Outcome> {
    props
        .iter()
        .map(|p| Outcome {
            arch: p.arch.clone(),
            reward: Some(reward(&p.arch)),
            log_prob: p.log_prob,
            evaluated: true,
        })
        .collect()
}

/// `rounds` ask(batch)/tell rounds; returns every proposal in order.
fn run(s: &mut dyn Strategy, rounds: usize, batch: usize) -> Vec<Proposal> {
    let mut all = Vec::new();
    for _ in 0..rounds {
        let props = s.ask(batch).unwrap();
        s.tell(&outcomes(&props, frac_op2)).unwrap();
        all.extend(props);
    }
    all
}

fn nb201(seed: u64) -> PpoController {
    PpoController::new(SearchSpace::nas_bench_201(), PpoConfig::default(), seed)
}

#[test]
fn same_seed_and_rewards_give_the_same_proposals_and_seeds_differ() {
    let a = run(&mut nb201(5), 4, 8);
    let b = run(&mut nb201(5), 4, 8);
    assert_eq!(a, b);
    let c = run(&mut nb201(6), 4, 8);
    assert_ne!(
        a.iter().map(|p| &p.arch).collect::<Vec<_>>(),
        c.iter().map(|p| &p.arch).collect::<Vec<_>>()
    );
}

#[test]
fn restore_continues_bit_identically() {
    let mut a = nb201(11);
    run(&mut a, 3, 8);
    let saved = a.state().unwrap();
    let next_a = run(&mut a, 3, 8);
    // A different seed: everything must come from the state.
    let mut b = nb201(999);
    b.restore(&saved).unwrap();
    let next_b = run(&mut b, 3, 8);
    assert_eq!(next_a, next_b);
    // log-probs are bit-identical too (compared as f64 by PartialEq above); and the
    // state after the same rounds is byte-identical.
    assert_eq!(a.state().unwrap(), b.state().unwrap());
}

#[test]
fn parallel_threads_give_the_same_sequences_as_sequential_runs() {
    let seq: Vec<Vec<Proposal>> = (0..2).map(|s| run(&mut nb201(s), 3, 8)).collect();
    let par: Vec<Vec<Proposal>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|s| sc.spawn(move || run(&mut nb201(s), 3, 8)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(seq, par);
}

#[test]
fn restore_rejects_a_state_of_another_shape() {
    let a = nb201(1);
    let mut other = PpoController::new(SearchSpace::nas_bench_graph(), PpoConfig::default(), 1);
    let err = other.restore(&a.state().unwrap()).unwrap_err().to_string();
    assert!(err.contains("weights"), "{err}");
    assert!(other.restore(b"{not json").is_err());
}

#[test]
fn ask_time_log_prob_equals_the_teacher_forced_burn_log_prob() {
    let mut c = nb201(3);
    let mut max_diff = 0f64;
    // compare at the initial weights and after a few updates
    for round in 0..3 {
        let props = c.ask(16).unwrap();
        let archs: Vec<Architecture> = props.iter().map(|p| p.arch.clone()).collect();
        let burn_lp = c.log_probs(&archs).unwrap();
        for (p, lb) in props.iter().zip(&burn_lp) {
            let la = p.log_prob.unwrap();
            max_diff = max_diff.max((la - lb).abs());
            assert!(
                (la - lb).abs() < 1e-4,
                "round {round}: ask {la} vs burn {lb}"
            );
            assert_eq!(la, c.log_prob_cpu(&p.arch).unwrap());
        }
        c.tell(&outcomes(&props, frac_op2)).unwrap();
    }
    assert_eq!(c.updates(), 3);
    eprintln!("max |ask - burn| log-prob difference: {max_diff:.2e}");
}

#[test]
fn one_update_moves_log_prob_in_the_direction_of_the_advantage() {
    let mut c = nb201(7);
    let a = Architecture(vec![2, 2, 2, 2, 2, 2]);
    let b = Architecture(vec![0, 1, 3, 4, 0, 1]);
    let before = c.log_probs(&[a.clone(), b.clone()]).unwrap();
    let outs = [(a.clone(), 1.0), (b.clone(), 0.0)].map(|(arch, r)| Outcome {
        log_prob: Some(c.log_prob_cpu(&arch).unwrap()),
        evaluated: true,
        arch,
        reward: Some(r),
    });
    c.tell(&outs).unwrap();
    assert_eq!(c.baseline(), Some(0.5));
    let after = c.log_probs(&[a, b]).unwrap();
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
}

#[test]
fn it_learns_a_synthetic_reward_and_beats_random() {
    let t0 = Instant::now();
    for seed in 0..3 {
        let mut ppo = nb201(seed);
        let props = run(&mut ppo, 50, 8); // 400 samples
        let r: Vec<f64> = props.iter().map(|p| frac_op2(&p.arch)).collect();
        let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
        let (first, last) = (mean(&r[..50]), mean(&r[r.len() - 50..]));
        let curve: Vec<String> = r.chunks(50).map(|c| format!("{:.2}", mean(c))).collect();
        eprintln!(
            "seed {seed}: mean reward per 50 samples {}",
            curve.join(" ")
        );
        let mut rand = RandomSearch::new(SearchSpace::nas_bench_201(), seed);
        let rr: Vec<f64> = run(&mut rand, 50, 8)
            .iter()
            .map(|p| frac_op2(&p.arch))
            .collect();
        let rand_last = mean(&rr[rr.len() - 50..]);
        eprintln!("seed {seed}: first 50 {first:.3}, last 50 {last:.3}, random {rand_last:.3}");
        assert!(last > first + 0.25, "seed {seed}: {first} -> {last}");
        assert!(
            last > rand_last + 0.25,
            "seed {seed}: {last} vs random {rand_last}"
        );
    }
    eprintln!("3 x 400 samples in {:.2}s", t0.elapsed().as_secs_f64());
}

#[test]
fn proposals_are_valid_and_failures_are_handled() {
    // NAS-Bench-Graph forbids all-skip op assignments; the controller resamples.
    let space = SearchSpace::nas_bench_graph_proteins();
    let mut c = PpoController::new(space.clone(), PpoConfig::default(), 2);
    for round in 0..5 {
        let props = c.ask(8).unwrap();
        assert!(props.iter().all(|p| space.is_valid(&p.arch)));
        let outs: Vec<Outcome> = props
            .iter()
            .enumerate()
            .map(|(i, p)| Outcome {
                arch: p.arch.clone(),
                reward: if (i + round) % 3 == 0 {
                    None
                } else {
                    Some(i as f64)
                },
                // an outcome from elsewhere has no log-prob
                log_prob: if i == 1 { None } else { p.log_prob },
                evaluated: true,
            })
            .collect();
        c.tell(&outs).unwrap();
    }
    assert_eq!(c.updates(), 5);
    // with failures left out, an all-failed batch changes nothing
    let mut skip = PpoController::new(
        space,
        PpoConfig {
            failed_reward: None,
            ..PpoConfig::default()
        },
        2,
    );
    let props = skip.ask(4).unwrap();
    let before = skip.state().unwrap();
    let outs: Vec<Outcome> = props
        .iter()
        .map(|p| Outcome {
            arch: p.arch.clone(),
            reward: None,
            log_prob: p.log_prob,
            evaluated: true,
        })
        .collect();
    skip.tell(&outs).unwrap();
    assert_eq!(skip.state().unwrap(), before);
    assert_eq!(skip.updates(), 0);
}

#[test]
fn config_round_trips_through_json_with_defaults() {
    let c: PpoConfig = serde_json::from_str(r#"{"lr": 0.01}"#).unwrap();
    assert_eq!(c.lr, 0.01);
    assert_eq!(c.hidden, 64);
    let text = serde_json::to_string(&PpoConfig::default()).unwrap();
    assert_eq!(
        serde_json::from_str::<PpoConfig>(&text).unwrap(),
        PpoConfig::default()
    );
}

/// Timing of a 500-sample search (batches of 8) on a 7-decision space:
/// `cargo test -p fnas-learn -- --ignored --nocapture speed`.
#[test]
#[ignore]
fn speed_of_a_500_sample_search() {
    let space = SearchSpace::nas_bench_graph_proteins();
    assert_eq!(space.decisions().len(), 7);
    let mut c = PpoController::new(space, PpoConfig::default(), 1);
    let (mut t_ask, mut t_tell) = (0.0, 0.0);
    let t0 = Instant::now();
    let mut n = 0;
    while n < 500 {
        let k = 8.min(500 - n);
        let t = Instant::now();
        let props = c.ask(k).unwrap();
        t_ask += t.elapsed().as_secs_f64();
        let outs = outcomes(&props, |a| {
            a.0.iter().map(|&x| f64::from(x)).sum::<f64>() / 20.0
        });
        let t = Instant::now();
        c.tell(&outs).unwrap();
        t_tell += t.elapsed().as_secs_f64();
        n += k;
    }
    let total = t0.elapsed().as_secs_f64();
    let state = c.state().unwrap();
    eprintln!(
        "500 samples: {total:.3}s total, ask {t_ask:.3}s, tell {t_tell:.3}s ({} updates, {:.1} ms/update); {} params, state {} bytes",
        c.updates(),
        1e3 * t_tell / c.updates() as f64,
        c.num_params(),
        state.len()
    );
}

/// Final quality vs learning rate on a random additive NB201 reward with Gaussian noise
/// (fraction of the optimum, mean of 6 seeds, per 50 samples):
/// `cargo test -p fnas-learn -- --ignored --nocapture lr_sweep`.
#[test]
#[ignore]
fn lr_sweep_on_a_noisy_additive_reward() {
    use rand::{Rng, SeedableRng};
    for lr in [0.002, 0.003, 0.005] {
        for noise in [0.0, 0.1] {
            let mut curve = [0.0f64; 10];
            for seed in 0..6u64 {
                let config = PpoConfig {
                    lr,
                    ..PpoConfig::default()
                };
                let mut ppo = PpoController::new(SearchSpace::nas_bench_201(), config, seed);
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 100);
                let table: Vec<f64> = (0..30).map(|_| rng.random::<f64>()).collect();
                let truth = |a: &Architecture| -> f64 {
                    a.0.iter()
                        .enumerate()
                        .map(|(e, &c)| table[e * 5 + c as usize])
                        .sum()
                };
                let best: f64 = table
                    .chunks(5)
                    .map(|t| t.iter().cloned().fold(0.0, f64::max))
                    .sum();
                let mut r = Vec::new();
                for _ in 0..63 {
                    let props = ppo.ask(8).unwrap();
                    let outs: Vec<Outcome> = props
                        .iter()
                        .map(|p| {
                            let t = truth(&p.arch) / 6.0;
                            r.push(t * 6.0 / best);
                            // approximately N(0, 1)
                            let z = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
                            Outcome {
                                arch: p.arch.clone(),
                                reward: Some(t + noise * z),
                                log_prob: p.log_prob,
                                evaluated: true,
                            }
                        })
                        .collect();
                    ppo.tell(&outs).unwrap();
                }
                for (k, c) in r.chunks(50).take(10).enumerate() {
                    curve[k] += c.iter().sum::<f64>() / c.len() as f64 / 6.0;
                }
            }
            eprintln!("lr {lr} noise {noise}: {curve:.3?}");
        }
    }
}

/// Random in-range tokens for every decision of `space` (valid or not: the gradient does
/// not care).
fn random_tokens<R: rand::Rng>(space: &SearchSpace, rng: &mut R) -> Vec<u16> {
    space
        .decisions()
        .iter()
        .map(|d| rng.random_range(0..d.choices.len()) as u16)
        .collect()
}

/// A batch of `n` samples for `c` with tokens drawn from `distinct` random architectures
/// (repeats share whole paths of the gradient's prefix tree), advantages of both signs,
/// weights (all 1 when `unit_weights`), and old log-probabilities that put the ratio
/// anywhere in about [0.5, 2] but never within 1% of a clip bound (where the two passes
/// could pick different branches of the min/clamp through rounding).
fn random_batch<R: rand::Rng>(
    c: &PpoController,
    space: &SearchSpace,
    n: usize,
    distinct: usize,
    unit_weights: bool,
    rng: &mut R,
) -> Vec<(Vec<u16>, f32, f32, f32)> {
    let clip = c.config().clip;
    let bounds = [(1.0 - clip).ln(), (1.0 + clip).ln()];
    let pool: Vec<Vec<u16>> = (0..distinct.max(1))
        .map(|_| random_tokens(space, rng))
        .collect();
    (0..n)
        .map(|_| {
            let tokens = pool[rng.random_range(0..pool.len())].clone();
            let logp = c.log_prob_tokens(&tokens);
            let log_ratio = loop {
                let d: f64 = rng.random_range(-0.7..0.7);
                if bounds.iter().all(|b| (d - b).abs() > 0.01) {
                    break d;
                }
            };
            let adv = rng.random_range(-2.0f32..2.0);
            let weight = if unit_weights {
                1.0
            } else {
                rng.random_range(0.0f32..2.0)
            };
            (tokens, logp - log_ratio as f32, adv, weight)
        })
        .collect()
}

fn as_samples(batch: &[(Vec<u16>, f32, f32, f32)]) -> Vec<Sample<'_>> {
    batch
        .iter()
        .map(|(tokens, old_logp, advantage, weight)| Sample {
            tokens,
            old_logp: *old_logp,
            advantage: *advantage,
            weight: *weight,
        })
        .collect()
}

/// The hand-written PPO gradient equals burn's autodiff gradient of the same loss, on
/// several spaces, hidden sizes (some not a multiple of the product tiles), clip ranges,
/// entropy weights and batches (all distinct or many repeats, ratios inside and outside
/// the clip range, advantages of both signs, weights 1 or random), at the initial
/// weights and after a few large steps.
#[test]
fn hand_written_ppo_gradient_matches_burn_autodiff() {
    use rand::SeedableRng;
    // (space, hidden, clip, entropy_coef, batch, distinct architectures, unit weights)
    let cases = [
        (SearchSpace::nas_bench_graph(), 64, 0.2, 0.02, 32, 32, false),
        (SearchSpace::nas_bench_graph(), 64, 0.2, 0.02, 40, 6, true),
        (SearchSpace::mnas_default(), 64, 0.1, 0.5, 24, 24, false),
        (SearchSpace::mnas_default(), 13, 0.2, 0.02, 20, 4, false),
        (SearchSpace::nas_bench_201(), 16, 0.3, 0.0, 7, 7, false),
        (SearchSpace::nas_bench_201(), 5, 0.2, 0.1, 9, 2, false),
        (
            SearchSpace::nas_bench_graph_proteins(),
            8,
            0.2,
            1.0,
            1,
            1,
            true,
        ),
    ];
    let mut worst = vec![0f32; cases.len()];
    let (mut clipped, mut total) = (0, 0);
    for (case, (space, hidden, clip, entropy_coef, n, distinct, unit)) in
        cases.into_iter().enumerate()
    {
        let config = PpoConfig {
            hidden,
            clip,
            entropy_coef,
            lr: 0.05,
            ..PpoConfig::default()
        };
        let mut c = PpoController::new(space.clone(), config, 100 + case as u64);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(case as u64);
        for round in 0..3 {
            if round > 0 {
                // move the weights away from the initialisation with large steps
                let b = random_batch(&c, &space, 16, 16, false, &mut rng);
                c.learn(&as_samples(&b), 0);
            }
            let batch = random_batch(&c, &space, n, distinct, unit, &mut rng);
            let samples = as_samples(&batch);
            let ours = c.loss_gradient(&samples);
            let reference = c.burn_loss_gradient(&samples);
            assert_eq!(ours.len(), reference.len());
            let scale = reference.iter().fold(0f32, |m, g| m.max(g.abs()));
            assert!(scale > 0.0, "case {case} round {round}: zero gradient");
            let max_diff = ours
                .iter()
                .zip(&reference)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let rel = max_diff / scale;
            worst[case] = worst[case].max(rel);
            assert!(
                rel <= 1e-4,
                "case {case} round {round}: max |diff| {max_diff:.3e} = {rel:.3e} of max |g| {scale:.3e}"
            );
            total += batch.len();
            clipped += batch
                .iter()
                .filter(|(tokens, old, adv, _)| {
                    let r = (c.log_prob_tokens(tokens) - old).exp();
                    let clip = clip as f32;
                    (r > 1.0 + clip && *adv > 0.0) || (r < 1.0 - clip && *adv < 0.0)
                })
                .count();
        }
    }
    eprintln!(
        "hand-written vs burn PPO gradient: max |diff| / max |g| per case {} \
         ({clipped} of {total} samples clipped)",
        worst
            .iter()
            .map(|w| format!("{w:.1e}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(clipped > 0 && clipped < total);
}

/// Time per gradient of a 32-sample NAS-Bench-Graph batch, burn autodiff vs the
/// hand-written pass (a print, not an assertion; run it in release):
/// `cargo test --release -p fnas-learn -- --ignored --nocapture gradient_speed`.
#[test]
#[ignore]
fn gradient_speed_burn_vs_hand_written() {
    use rand::SeedableRng;
    let space = SearchSpace::nas_bench_graph();
    let c = PpoController::new(space.clone(), PpoConfig::default(), 1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    // all distinct: the least sharing in the prefix tree
    let batch = random_batch(&c, &space, 32, 32, false, &mut rng);
    let samples = as_samples(&batch);
    let time = |f: &dyn Fn() -> Vec<f32>| {
        let _ = f(); // warm-up
        let reps = 200;
        let t = Instant::now();
        let mut sink = 0f32;
        for _ in 0..reps {
            sink += f()[0];
        }
        (1e3 * t.elapsed().as_secs_f64() / f64::from(reps), sink)
    };
    let (burn_ms, _) = time(&|| c.burn_loss_gradient(&samples));
    let (ours_ms, _) = time(&|| c.loss_gradient(&samples));
    eprintln!(
        "PPO gradient, batch 32, {} decisions, {} params: burn autodiff {burn_ms:.3} ms/call, \
         hand-written {ours_ms:.3} ms/call ({:.1}x)",
        space.decisions().len(),
        c.num_params(),
        burn_ms / ours_ms
    );
}

// Bad numbers (issue 27.4): NaN or infinite metrics become failed trials before any
// learned strategy sees them.

/// NB201 with the synthetic reward, and a NaN or an infinity in one metric for a third of
/// the architectures (a bad benchmark record, a diverged child).
struct Poisoned(SearchSpace);

fn poisoned(a: &Architecture) -> Option<u64> {
    let h =
        a.0.iter()
            .fold(7u64, |h, &c| h.wrapping_mul(131).wrapping_add(c as u64));
    (h % 3 == 0).then_some(h / 3 % 3)
}

impl fnas_core::Evaluator for Poisoned {
    fn space(&self) -> &SearchSpace {
        &self.0
    }
    fn task(&self) -> String {
        "poisoned".into()
    }
    fn evaluate(&self, arch: &Architecture) -> Result<fnas_core::Evaluation, fnas_core::EvalError> {
        let mut m = fnas_core::Metrics {
            val_accuracy: frac_op2(arch),
            latency_ms: Some(1.0),
            ..Default::default()
        };
        match poisoned(arch) {
            Some(0) => m.val_accuracy = f64::NAN,
            Some(1) => m.latency_ms = Some(f64::INFINITY),
            Some(_) => m.val_accuracy = f64::NEG_INFINITY,
            None => {}
        }
        Ok(fnas_core::Evaluation {
            metrics: m,
            cost: fnas_core::Cost::query(),
        })
    }
}

/// A strategy that records every reward it is told.
struct Spy<S> {
    inner: S,
    told: Vec<Option<f64>>,
}

impl<S: Strategy> Strategy for Spy<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn ask(&mut self, n: usize) -> Result<Vec<Proposal>, fnas_core::StrategyError> {
        self.inner.ask(n)
    }
    fn tell(&mut self, outcomes: &[Outcome]) -> Result<(), fnas_core::StrategyError> {
        self.told.extend(outcomes.iter().map(|o| o.reward));
        self.inner.tell(outcomes)
    }
    fn state(&self) -> Result<Vec<u8>, fnas_core::StrategyError> {
        self.inner.state()
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), fnas_core::StrategyError> {
        self.inner.restore(state)
    }
}

/// Runs a search of `budget` on the poisoned evaluator; checks the trials and what the
/// strategy was told.
fn poisoned_search<S: Strategy>(strategy: S, budget: u64) -> S {
    use fnas_core::search::{run_search, SearchConfig};
    use fnas_core::store::{ExperimentSpec, TrialStatus};
    use fnas_core::Store;
    let space = SearchSpace::nas_bench_201();
    let mut store = fnas_store::SqliteStore::in_memory().unwrap();
    let name = strategy.name().to_string();
    let exp = store
        .create_experiment(&ExperimentSpec {
            name: name.clone(),
            space: space.name().into(),
            task: "poisoned".into(),
            strategy: name.clone(),
            seed: 1,
            budget,
            config: serde_json::json!({}),
        })
        .unwrap();
    let mut spy = Spy {
        inner: strategy,
        told: Vec::new(),
    };
    let cfg = SearchConfig::new(budget, 10, fnas_core::RewardConfig::default());
    let summary = run_search(
        &mut store,
        &exp,
        &mut spy,
        &Poisoned(space.clone()),
        &cfg,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(summary.spent, budget, "{name}");
    assert!(summary.best_reward.is_some_and(f64::is_finite), "{name}");
    let trials = store.trials(exp.id).unwrap();
    let mut failed = 0;
    for t in &trials {
        let arch = space.parse(&t.arch).unwrap();
        if poisoned(&arch).is_some() {
            assert_eq!(t.status, TrialStatus::Failed, "{name}: {}", t.arch);
            let e = t.error.as_deref().unwrap_or_default();
            assert!(e.starts_with("non-finite reward ("), "{name}: {e}");
            failed += 1;
        } else if t.status == TrialStatus::Done {
            assert!(t.reward.is_some_and(f64::is_finite), "{name}: {}", t.arch);
        }
    }
    assert!(failed > 0, "{name}: the search met poisoned architectures");
    assert!(
        spy.told.iter().flatten().all(|r| r.is_finite()),
        "{name}: {:?}",
        spy.told
    );
    spy.inner
}

#[test]
fn learned_strategies_never_see_a_non_finite_reward() {
    let space = SearchSpace::nas_bench_201();
    poisoned_search(nb201(1), 60);
    let fnas = poisoned_search(
        crate::fnas::FnasStrategy::new(space.clone(), crate::fnas::FnasConfig::default(), 1),
        60,
    );
    if let Some(c) = fnas.critic() {
        assert!(c.own_data().iter().all(|(_, r)| r.is_finite()));
    }
    poisoned_search(
        crate::select::SelectStrategy::new(space, crate::select::SelectConfig::default(), 1),
        60,
    );
}

#[test]
fn the_critic_ignores_a_non_finite_point() {
    let space = SearchSpace::nas_bench_201();
    let mut c = crate::critic::Critic::new(&space, crate::critic::CriticConfig::default(), 1);
    let a = Architecture(vec![0; 6]);
    c.add(&a, f64::NAN);
    c.add(&a, f64::INFINITY);
    c.add_transferred(&a, f64::NEG_INFINITY);
    c.add(&a, 0.5);
    assert_eq!(c.own_data(), vec![(a, 0.5)]);
}
