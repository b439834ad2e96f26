"""Hyperparameter grids and their selection on the validation split (never on test).

The grids are the method registry's (`hf_lelp.methods.registry`: each's `search`, `search_after`), staged so that
the search stays affordable on a CPU: the methods searched from scratch (CE: learning rate; KD: learning rate, τ)
first, then every other method from the best (learning rate, τ) of the method it is tuned after (KD for the
built-in ones), tuning only its own knobs: the feature weight for fitnet/rkd/pkt, (S, β) for the pseudo-subclass
methods. The oracle's S is the number of fine labels, and its within-class targets are one-hot, so it has no knob of
its own. A method added to the registry is searched over its own grid, with no change here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from hf_lelp.methods.registry import get_method
from hf_lelp.methods.sources import Oracle

# The method the benchmark is about: its S and β sweeps, --auto_hparams against its full search, the report's
# comparisons with it.
PAPER_METHOD = "lelp"
# The knobs --auto_hparams chooses (successive halving over the same grid as the full search).
AUTO_KNOBS = ("num_subclasses", "subclass_temperature")
# Two values where a choice is made (the learning rate), one elsewhere: a fast end-to-end check of the machinery.
SMOKE_VALUES = MappingProxyType(
    {
        "temperature": (2.0,),
        "feature_loss_weight": (1.0,),
        "num_subclasses": (2,),
        "subclass_temperature": (1.0,),
        "ensemble_size": (2,),
    }
)


@dataclass(frozen=True)
class SearchSpace:
    # Knob -> candidates replacing the registry's for every method that searches that knob (empty: the registry's).
    values: Mapping[str, tuple] = field(default_factory=dict)
    s_sweep: tuple[int, ...] = (1, 2, 4, 8, 16)
    beta_sweep: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

    @classmethod
    def smoke(cls) -> SearchSpace:
        return cls(dict(SMOKE_VALUES), (1, 2), (1.0, 2.0))

    def grid(self, method: str, anchor: dict | None = None, unlabelled: bool = False) -> list[dict]:
        """Configurations of `method`; `anchor`: the chosen configuration of the method it is tuned after."""
        return get_method(method).search_grid(anchor, values=self.values, unlabelled=unlabelled)

    def knobs(self, method: str) -> dict[str, list]:
        """The candidates of each knob `method` searches, as this space searches them (recorded with results)."""
        return {knob: list(self.values.get(knob, values)) for knob, values in get_method(method).search.items()}

    def record(self, methods: Sequence[str]) -> dict:
        return {
            "grids": {m: {"search_after": get_method(m).search_after, "knobs": self.knobs(m)} for m in methods},
            "overrides": {knob: list(values) for knob, values in self.values.items()},
            "s_sweep": list(self.s_sweep),
            "beta_sweep": list(self.beta_sweep),
        }


def search_order(methods: Sequence[str]) -> list[list[str]]:
    """`methods` and the methods they are tuned after, in waves: each method after its `search_after`'s wave."""
    pending = list(dict.fromkeys(methods))
    for method in pending:  # grows while iterating: the anchors of anchors
        anchor = get_method(method).search_after
        if anchor is not None and anchor not in pending:
            pending.append(anchor)
    waves, done = [], set()
    while pending:
        wave = [m for m in pending if get_method(m).search_after in done | {None}]
        if not wave:
            raise ValueError(f"Methods {pending} are tuned after each other in a cycle (search_after).")
        waves.append(wave)
        done.update(wave)
        pending = [m for m in pending if m not in done]
    return waves


def needs_fine_labels(method: str) -> bool:
    """The method's pseudo-subclasses are known fine labels (it is skipped on a dataset without them)."""
    return isinstance(get_method(method).subclass_source, Oracle)


def select(trials: list[dict]) -> dict:
    """The trial with the best validation accuracy (macro-F1 breaks ties, then the earlier grid entry)."""
    if not trials:
        raise ValueError("No trials to select from.")
    if any(t.get("split", "validation") != "validation" for t in trials):
        raise ValueError("Hyperparameters are selected on validation trials only.")
    return max(enumerate(trials), key=lambda item: (item[1]["accuracy"], item[1]["macro_f1"], -item[0]))[1]
