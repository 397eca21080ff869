//! Single-image, single-thread inference latency of a child network.
//!
//! MNAS-style rewards need a latency that does not depend on how busy the machine is or
//! how many cores it has, so the measurement runs batch 1 on exactly one thread.
//!
//! # How one thread is enforced (burn 0.22.1, flex backend)
//!
//! burn-flex executes every op synchronously on the calling thread; its only
//! parallelism is rayon: `par_iter`/`par_chunks` over (batch, channel) or rows in convs,
//! pooling and large reductions, and `gemm` called with `Parallelism::Rayon(0)` for large
//! matmuls/1x1 convs, where gemm-common 0.19 turns `0` into `rayon::current_num_threads()`.
//! Both go to the rayon pool of the *current* thread. So running the forward passes
//! inside `ThreadPoolBuilder::new().num_threads(1).build()?.install(..)` confines all of
//! it to that pool's single worker: `current_num_threads()` is 1 there, and parallel
//! iterators run inline on the worker. burn-flex spawns no threads of its own and has no
//! global pool besides rayon's (checked by reading `burn-flex-0.22.1/src`; the only
//! `ThreadPoolBuilder` uses are in its tests). fnas's own kernels (`fnas-kernels`, the
//! default on the CPU) parallelise the same way, with rayon on the current pool and
//! gemm with `Parallelism::None`. The integration test
//! `latency_runs_on_one_thread` (tests/net.rs) checks it from the outside: during a
//! measurement the global rayon pool's workers get no CPU time, and the process's CPU
//! time does not exceed the wall time; the same forwards run outside the pool do use
//! the global workers.

use std::time::Instant;

use burn::prelude::*;

use crate::net::ChildNet;
use crate::plan::ChildPlan;

/// Latency of one forward pass of one image, in milliseconds.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyStats {
    pub median_ms: f64,
    /// 10th percentile (linear interpolation between order statistics).
    pub p10_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// Timed runs (warmup runs excluded).
    pub runs: usize,
}

/// Why a latency measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    #[error("latency needs at least one timed run")]
    NoRuns,
    #[error("network has no parameters, so no device to run it on")]
    NoDevice,
    #[error("cannot build the one-thread rayon pool: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
    #[error("reading the network output failed: {0}")]
    Read(String),
}

/// Median, p10 and p90 wall-clock time of `runs` forward passes of one image through
/// the inference (`valid()`) copy of `net`, after `warmup` untimed passes (the first
/// pass also initialises burn's lazy parameters), all on one thread (see the module
/// docs for why this really is one thread).
pub fn measure_latency(
    net: &ChildNet,
    runs: usize,
    warmup: usize,
) -> Result<LatencyStats, LatencyError> {
    if runs == 0 {
        return Err(LatencyError::NoRuns);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .thread_name(|_| "fnas-latency".into())
        .build()?;
    pool.install(|| {
        let model = net.valid();
        let device = model
            .devices()
            .into_iter()
            .next()
            .ok_or(LatencyError::NoDevice)?;
        let (c, r) = (model.in_channels, model.resolution);
        // A fixed, non-constant input so no op can take a shortcut on zeros.
        let values: Vec<f32> = (0..c * r * r)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
            .collect();
        let input = Tensor::<4>::from_data(TensorData::new(values, [1, c, r, r]), &device);
        let run = || -> Result<(), LatencyError> {
            // Reading the logits back makes the timing include all the work even on a
            // backend that queues ops.
            model
                .forward(input.clone())
                .try_into_vec_as::<f32>()
                .map(|_| ())
                .map_err(|e| LatencyError::Read(format!("{e:?}")))
        };
        for _ in 0..warmup {
            run()?;
        }
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t0 = Instant::now();
            run()?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        Ok(stats(times))
    })
}

/// [`measure_latency`] of a freshly initialised network for `plan` on `device`: latency
/// does not depend on the weights' values, so no trained model is needed.
pub fn measure_plan_latency(
    plan: &ChildPlan,
    device: &Device,
    runs: usize,
    warmup: usize,
) -> Result<LatencyStats, LatencyError> {
    measure_latency(&ChildNet::new(plan, device), runs, warmup)
}

fn stats(mut times: Vec<f64>) -> LatencyStats {
    times.sort_by(f64::total_cmp);
    LatencyStats {
        median_ms: quantile(&times, 0.5),
        p10_ms: quantile(&times, 0.1),
        p90_ms: quantile(&times, 0.9),
        runs: times.len(),
    }
}

/// Quantile `q` of sorted, non-empty `v`, interpolating linearly between neighbours.
fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = stats(vec![5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.median_ms, 3.0);
        assert!((s.p10_ms - 1.4).abs() < 1e-12);
        assert!((s.p90_ms - 4.6).abs() < 1e-12);
        assert_eq!(s.runs, 5);
        let one = stats(vec![2.5]);
        assert_eq!((one.median_ms, one.p10_ms, one.p90_ms), (2.5, 2.5, 2.5));
    }

    #[test]
    fn zero_runs_is_an_error() {
        let space = fnas_core::SearchSpace::mnas_default();
        let spec = space.mnas_spec().unwrap();
        let plan = ChildPlan::new(spec, &crate::plan::median_arch(spec), Some(8)).unwrap();
        let e = measure_plan_latency(&plan, &Device::flex(), 0, 0).unwrap_err();
        assert!(matches!(e, LatencyError::NoRuns));
    }
}
