"""Optuna's TPE sampler (Bergstra et al., 2011) through Optuna's ask/tell API (extra: ``tpe``)."""

from __future__ import annotations

from dataclasses import dataclass

from autorag_hp._validation import check_int
from autorag_hp.strategies._base import Coords, Proposal, Strategy

__all__ = ["TPE"]


@dataclass(frozen=True)
class TPEOptions:
    """``n_startup_trials``: random trials before TPE's model is used (Optuna's default: 10)."""

    n_startup_trials: int = 10
    multivariate: bool = False

    def __post_init__(self) -> None:
        check_int("n_startup_trials", self.n_startup_trials, minimum=0)


def _import_optuna():
    try:
        import optuna
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "strategy 'tpe' needs Optuna: install the extra with `pip install 'autorag-hp[tpe]'`"
        ) from exc
    return optuna


class TPE(Strategy):
    """Each ask is an Optuna trial over categorical distributions; tells complete it (maximise)."""

    name = "tpe"
    Options = TPEOptions

    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, **options)
        optuna = _import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        sampler = optuna.samplers.TPESampler(
            seed=self.seed,
            n_startup_trials=self.options.n_startup_trials,
            multivariate=self.options.multivariate,
        )
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        # Optuna stores categorical choices by position: keep the positions as choices.
        self._dists = {
            name: optuna.distributions.CategoricalDistribution(list(range(size)))
            for name, size in zip(space.names, space.sizes)
        }
        self._trials: dict[int, object] = {}  # trial number (the proposal's tag) -> open trial

    def propose(self) -> Proposal:
        """Opens an Optuna trial (Optuna has no side-effect-free ask); the tag is its number."""
        trial = self.study.ask(self._dists)
        self._trials[trial.number] = trial
        return Proposal(tuple(int(trial.params[name]) for name in self.space.names), trial.number)

    def _update(self, coords: Coords, reward: float, tag) -> None:
        if tag is not None:
            self.study.tell(self._trials.pop(tag), reward)
        else:
            params = {name: c for name, c in zip(self.space.names, coords)}
            self.study.add_trial(
                self._optuna.trial.create_trial(params=params, distributions=self._dists, value=reward)
            )
