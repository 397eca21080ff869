//! The critic's rank correlation with the truth, per encoding and predictor, on every
//! benchmark dataset: Kendall tau between predicted and true validation accuracy on 500
//! held-out uniform architectures, after fitting on 25/50/100/200 uniform ones, median
//! over seeds.
//!
//! `cargo run --release -p fnas-learn --example critic_tau -- [SEEDS]` (default 10;
//! data from `scripts/setup.sh`).

use fnas_bench::Benchmark;
use fnas_core::space::Encoding;
use fnas_core::Architecture;
use fnas_learn::critic::{Critic, CriticConfig};
use fnas_learn::normal::normal_scores;
use fnas_learn::predictor::Predictor;
use fnas_learn::ridge::{RidgeConfig, RidgeEnsemble};
use fnas_learn::transfer::kendall_tau;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SIZES: [usize; 4] = [25, 50, 100, 200];
const HELD_OUT: usize = 500;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = fnas_bench::resolve_data_dir(None);
    println!("Kendall tau (median over {seeds} seeds) of predicted vs true validation accuracy on {HELD_OUT} held-out uniform architectures");
    print!("{:<16} {:<10} {:<22}", "BENCHMARK", "DATASET", "CRITIC");
    for n in SIZES {
        print!(" {:>6}", format!("@{n}"));
    }
    println!();
    for bench in [Benchmark::NasBenchGraph, Benchmark::AnalogNasBench] {
        for ds in bench.datasets() {
            let table = match fnas_bench::load(bench, &dir, ds) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("skipping {}/{ds}: {e}", bench.name());
                    continue;
                }
            };
            let space = table.space().clone();
            let draw = |rng: &mut ChaCha8Rng, n: usize| -> Vec<(Architecture, f64)> {
                let mut out = Vec::new();
                while out.len() < n {
                    let a = space.sample(rng);
                    if let Some((v, _)) = table.val_test(&a) {
                        out.push((a, v));
                    }
                }
                out
            };
            let critics = ["ridge one-hot", "ridge structure", "mlp one-hot (fnas)"];
            let mut taus = vec![vec![Vec::new(); SIZES.len()]; critics.len()];
            for seed in 0..seeds {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let train = draw(&mut rng, *SIZES.last().unwrap_or(&200));
                let test = draw(&mut rng, HELD_OUT);
                let truth: Vec<f64> = test.iter().map(|t| t.1).collect();
                for (k, &n) in SIZES.iter().enumerate() {
                    let pts = &train[..n];
                    let ys = normal_scores(&pts.iter().map(|p| p.1).collect::<Vec<_>>());
                    for (c, enc) in [Encoding::OneHot, Encoding::Structure]
                        .into_iter()
                        .enumerate()
                    {
                        let xs: Vec<_> = pts.iter().map(|p| space.encode(enc, &p.0)).collect();
                        let mut m = RidgeEnsemble::new(
                            space.encoding_len(enc),
                            RidgeConfig::default(),
                            seed,
                        );
                        m.fit(&xs, &ys);
                        let pred: Vec<f64> = test
                            .iter()
                            .map(|t| m.predict(&space.encode(enc, &t.0)).mean)
                            .collect();
                        taus[c][k].push(kendall_tau(&pred, &truth));
                    }
                    let mut mlp = Critic::new(&space, CriticConfig::default(), seed);
                    for p in pts {
                        mlp.add(&p.0, p.1);
                    }
                    for _ in 0..20 {
                        mlp.fit();
                    }
                    let pred: Vec<f64> = test.iter().map(|t| mlp.predict(&t.0).mean).collect();
                    taus[2][k].push(kendall_tau(&pred, &truth));
                }
            }
            for (c, name) in critics.iter().enumerate() {
                print!("{:<16} {:<10} {:<22}", bench.name(), ds, name);
                for t in &taus[c] {
                    print!(" {:>6.3}", median(t.clone()));
                }
                println!();
            }
        }
    }
}
