//! The strategies this build offers, as [`StrategyKind`], their module presets and the
//! factory that builds one from an experiment's settings.

use std::fmt;
use std::str::FromStr;

use fnas_core::space::Encoding;
use fnas_core::strategy::{Evolution, RandomSearch};
use fnas_core::{SearchSpace, Strategy};
use fnas_learn::acquisition::Acquisition;
use fnas_learn::fnas::{FnasConfig, FnasStrategy};
use fnas_learn::gate::{GateConfig, GatedStrategy};
use fnas_learn::ppo::{PpoConfig, PpoController};
use fnas_learn::select::{PpoLearn, SelectConfig, SelectStrategy};

use crate::error::{Result, RunError};
use crate::settings::SearchSettings;

/// A search strategy. `Ppo` is the vanilla MnasNet-style baseline; the `Fnas*` ones are
/// FNAS with some modules on (for ablations), `Fnas` has all of them; the `FnasSelect*`
/// ones let the critic choose what is evaluated. Experiments store the name
/// ([`StrategyKind::as_str`]), so the names never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    Random,
    Evolution,
    /// Regularized evolution behind the FNAS critic's train-or-trust gate.
    EvolutionGate,
    Ppo,
    Fnas,
    /// Full FNAS with every transfer source counting alike (the ablation of weighting).
    FnasPooled,
    FnasValue,
    FnasGate,
    FnasReplay,
    FnasReplayNocorr,
    FnasSelect,
    FnasSelectOnehot,
    FnasSelectUcb,
    FnasSelectEi,
    FnasSelectNoneighbours,
    FnasSelectNomutants,
    FnasSelectNocontroller,
    FnasSelectNouniform,
    FnasSelectPpoOwn,
}

impl StrategyKind {
    /// Every strategy, in the order `--help` and error messages list them.
    pub const ALL: [StrategyKind; 19] = [
        Self::Random,
        Self::Evolution,
        Self::EvolutionGate,
        Self::Ppo,
        Self::Fnas,
        Self::FnasPooled,
        Self::FnasValue,
        Self::FnasGate,
        Self::FnasReplay,
        Self::FnasReplayNocorr,
        Self::FnasSelect,
        Self::FnasSelectOnehot,
        Self::FnasSelectUcb,
        Self::FnasSelectEi,
        Self::FnasSelectNoneighbours,
        Self::FnasSelectNomutants,
        Self::FnasSelectNocontroller,
        Self::FnasSelectNouniform,
        Self::FnasSelectPpoOwn,
    ];

    /// The name on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Evolution => "evolution",
            Self::EvolutionGate => "evolution-gate",
            Self::Ppo => "ppo",
            Self::Fnas => "fnas",
            Self::FnasPooled => "fnas-pooled",
            Self::FnasValue => "fnas-value",
            Self::FnasGate => "fnas-gate",
            Self::FnasReplay => "fnas-replay",
            Self::FnasReplayNocorr => "fnas-replay-nocorr",
            Self::FnasSelect => "fnas-select",
            Self::FnasSelectOnehot => "fnas-select-onehot",
            Self::FnasSelectUcb => "fnas-select-ucb",
            Self::FnasSelectEi => "fnas-select-ei",
            Self::FnasSelectNoneighbours => "fnas-select-noneighbours",
            Self::FnasSelectNomutants => "fnas-select-nomutants",
            Self::FnasSelectNocontroller => "fnas-select-nocontroller",
            Self::FnasSelectNouniform => "fnas-select-nouniform",
            Self::FnasSelectPpoOwn => "fnas-select-ppo-own",
        }
    }

    /// The FNAS critic's settings apply (`--critic-min-points`, `--screen`).
    pub fn has_fnas_critic(self) -> bool {
        matches!(
            self,
            Self::Fnas | Self::FnasPooled | Self::FnasValue | Self::FnasGate
        )
    }

    /// The FNAS critic's train-or-trust gate settings apply (`--trust-contenders`,
    /// `--gate-after-calibration`, `--gate-tau`).
    pub fn has_fnas_gate(self) -> bool {
        matches!(self, Self::Fnas | Self::FnasPooled | Self::FnasGate)
    }

    /// Its critic can be pre-trained on earlier experiments (`--transfer-from`).
    pub fn takes_transfer(self) -> bool {
        self.has_fnas_critic() || self == Self::EvolutionGate
    }

    /// A critic-chosen-proposals strategy (`fnas-select` and its ablations).
    pub fn is_select(self) -> bool {
        self.select_preset(&PpoConfig::default()).is_some()
    }

    /// Real training uses the knowledge pool by default (`--pool auto`).
    pub fn pool_by_default(self) -> bool {
        self == Self::Fnas
    }

    /// The `fnas-select` configuration (`None` for the others): the default, or one
    /// ablation (one switch changed).
    pub fn select_preset(self, ppo: &PpoConfig) -> Option<SelectConfig> {
        let mut c = SelectConfig {
            ppo: ppo.clone(),
            ..SelectConfig::default()
        };
        match self {
            Self::FnasSelect => {}
            Self::FnasSelectOnehot => c.encoding = Encoding::OneHot,
            Self::FnasSelectUcb => c.acquisition = Acquisition::Ucb,
            Self::FnasSelectEi => c.acquisition = Acquisition::Ei,
            Self::FnasSelectNoneighbours => c.sources.neighbours = false,
            Self::FnasSelectNomutants => c.sources.mutants = false,
            Self::FnasSelectNocontroller => c.sources.controller = false,
            Self::FnasSelectNouniform => c.sources.uniform = false,
            Self::FnasSelectPpoOwn => c.ppo_learn = PpoLearn::Own,
            _ => return None,
        }
        Some(c)
    }

    /// The FNAS configuration (`None` for non-FNAS strategies).
    ///
    /// - `fnas-value`: critic as PPO's value function only;
    /// - `fnas-gate`: critic as value and as the train-or-trust gate;
    /// - `fnas-replay-nocorr` / `fnas-replay`: experience replay without / with the
    ///   off-policy correction, no critic;
    /// - `fnas`: everything (transfer too, when sources are given).
    pub fn fnas_preset(self, ppo: &PpoConfig) -> Option<FnasConfig> {
        let off = FnasConfig {
            ppo: ppo.clone(),
            critic: None,
            critic_value: false,
            gate: false,
            replay: false,
            correction: false,
            ..FnasConfig::default()
        };
        let critic = Some(FnasConfig::default().critic.unwrap_or_default());
        Some(match self {
            Self::Fnas => FnasConfig {
                ppo: ppo.clone(),
                ..FnasConfig::default()
            },
            Self::FnasValue => FnasConfig {
                critic,
                critic_value: true,
                ..off
            },
            Self::FnasGate => FnasConfig {
                critic,
                critic_value: true,
                gate: true,
                ..off
            },
            Self::FnasPooled => FnasConfig {
                ppo: ppo.clone(),
                transfer_weighting: false,
                ..FnasConfig::default()
            },
            Self::FnasReplay => FnasConfig {
                replay: true,
                correction: true,
                ..off
            },
            Self::FnasReplayNocorr => FnasConfig {
                replay: true,
                correction: false,
                ..off
            },
            _ => return None,
        })
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = RunError;

    /// A strategy by name; an unknown name is refused with the list of known ones.
    fn from_str(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                RunError::Invalid(format!(
                    "unknown strategy `{name}` (known: {})",
                    known.join(", ")
                ))
            })
    }
}

/// Builds the strategy of `kind` for a search with `settings`; `transfer` pre-trains
/// a critic (FNAS strategies and `evolution-gate`).
pub fn make_strategy(
    kind: StrategyKind,
    space: SearchSpace,
    seed: u64,
    settings: &SearchSettings,
    transfer: &[fnas_learn::transfer::SourcePoints],
) -> Result<Box<dyn Strategy>> {
    if let Some(preset) = kind.select_preset(&settings.ppo) {
        let cfg = settings.select.clone().unwrap_or(preset);
        cfg.validate()
            .map_err(|e| RunError::Invalid(format!("{kind}: {e}")))?;
        return Ok(Box::new(SelectStrategy::new(space, cfg, seed)));
    }
    if let Some(preset) = kind.fnas_preset(&settings.ppo) {
        let cfg = settings.fnas.clone().unwrap_or(preset);
        return Ok(Box::new(FnasStrategy::with_transfer(
            space, cfg, seed, transfer,
        )));
    }
    Ok(match kind {
        StrategyKind::Random => Box::new(RandomSearch::new(space, seed)),
        StrategyKind::Evolution => {
            Box::new(Evolution::new(space, settings.evolution.clone(), seed))
        }
        // the FNAS critic's gate around regularized evolution (the proposer is swappable)
        StrategyKind::EvolutionGate => {
            let evo = Evolution::new(space.clone(), settings.evolution.clone(), seed);
            Box::new(GatedStrategy::with_transfer(
                kind.as_str(),
                space,
                Box::new(evo),
                GateConfig::default(),
                seed,
                transfer,
            ))
        }
        _ => Box::new(PpoController::new(space, settings.ppo.clone(), seed)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_known() {
        for k in StrategyKind::ALL {
            assert_eq!(k.as_str().parse::<StrategyKind>().ok(), Some(k));
        }
        let e = "sa".parse::<StrategyKind>().unwrap_err().to_string();
        assert!(
            e.starts_with(
                "unknown strategy `sa` (known: random, evolution, evolution-gate, ppo, fnas,"
            ),
            "{e}"
        );
        assert!(e.ends_with("fnas-select-ppo-own)"), "{e}");
    }

    /// The predicates agree with the presets they stand for.
    #[test]
    fn predicates_follow_the_presets() {
        let ppo = PpoConfig::default();
        for k in StrategyKind::ALL {
            let f = k.fnas_preset(&ppo);
            assert_eq!(
                k.has_fnas_critic(),
                f.as_ref().is_some_and(|f| f.critic.is_some()),
                "{k}"
            );
            assert_eq!(k.has_fnas_gate(), f.as_ref().is_some_and(|f| f.gate), "{k}");
            assert_eq!(k.is_select(), k.as_str().starts_with("fnas-select"), "{k}");
            assert!(!(k.is_select() && f.is_some()), "{k}");
        }
        assert!(StrategyKind::EvolutionGate.takes_transfer());
        assert!(!StrategyKind::FnasSelect.takes_transfer());
        assert!(StrategyKind::Fnas.pool_by_default());
        assert!(!StrategyKind::FnasPooled.pool_by_default());
    }
}
