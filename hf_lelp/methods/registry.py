"""The method registry: one `Method` per `--method`, each added by an explicit `register_method(Method(...))`.

An entry says everything that differs between methods: whether it needs labels or the teacher cache, where its
pseudo-subclasses come from, the training-only modules it adds, its loss, the knobs the benchmark searches and the
config fields that describe a run. LELPConfig (validation, --method choices and help), LELPTrainer (loss, modules,
card metadata) and the workflow read the entry; nothing else compares method names.

Adding a method: one `register_method(Method(...))` (below, or in your own code before LELPConfig is built), its
loss as a pure function in `losses.py`, and a hand-computed test of that loss; the per-method test matrix in
`tests/test_methods.py` iterates over the registry and trains the new method by itself.

S and K: S is the number of pseudo-subclasses per class (per member), K the number of ensemble members
(`random_ensemble`, else 1). A source scores S·K `columns` per class, the width of the student's subclass head.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hf_lelp.methods.projections import FitOptions
from hf_lelp.methods.sources import KMeans, Oracle, Projections, RunOptions, SubclassRecipe, SubclassSource
from hf_lelp.methods.terms import (
    LossTerm,
    ModuleHook,
    ce_term,
    feature_regressor,
    fitnet_term,
    kd_term,
    pkt_term,
    rkd_term,
    subclass_head,
    subclass_term,
)

# --- The entry.

# Knobs a method tuned after another (`search_after`) takes from that method's best configuration.
INHERITED_KNOBS = ("learning_rate", "temperature")


@dataclass(frozen=True)
class Method:
    """One `--method`: what it needs, where its subclasses come from, what it adds to the student, its loss, its
    benchmark grid and what describes a run of it."""

    name: str
    help: str
    loss: LossTerm  # the soft term (or the label term of a labels-only method)
    uses_teacher: bool = True  # reads the teacher cache (hidden states and logits)
    needs_labels: str | None = None  # what labels are for, in the error when the transfer set has none
    subclass_source: SubclassRecipe | None = None  # None: no pseudo-subclasses
    feature_loss: LossTerm | None = None  # added with weight --feature_loss_weight
    training_modules: tuple[ModuleHook, ...] = ()
    # The benchmark's grid: LELPConfig field -> candidates (one value = fixed), searched after `search_after`'s best
    # (learning rate, τ) is known; None = searched from scratch (learning rate included).
    search: Mapping[str, tuple] = field(default_factory=dict)
    search_after: str | None = "kd"
    card_fields: tuple[str, ...] = ()  # LELPConfig fields that describe a run (lelp_config.json and the card)
    # What the card says the method did, formatted with lelp_config.json's values and `num_classes`; its paper.
    description: str = ""
    paper: str = ""

    @property
    def chooses_num_subclasses(self) -> bool:
        """S and β are knobs of this method (what --auto_hparams chooses)."""
        return self.subclass_source is not None and self.subclass_source.chooses_num_subclasses

    def fit_options(self, args: RunOptions) -> FitOptions | None:
        return self.subclass_source.fit_options(args) if self.subclass_source is not None else None

    def num_members(self, args: RunOptions) -> int:
        return self.subclass_source.num_members(args) if self.subclass_source is not None else 1

    def option_values(self, args: RunOptions, subclasses: SubclassSource | None = None) -> dict:
        """The options this method reads, with the run's values: S, β, λ and the head's layout for a method with
        pseudo-subclasses (S as the source was built), τ and its τ² scaling for one that reads the teacher's logits,
        α for all; then its own settings (`card_values`). A labels-only method records none of S, β, τ. They are
        also the method's part of a run's identity (hf_lelp/training/resume.py)."""
        values = {}
        if self.subclass_source is not None:
            values["subclass_head"] = args.subclass_head
            values["num_subclasses"] = subclasses.num_subclasses if subclasses is not None else args.num_subclasses
            values["subclass_temperature"] = args.subclass_temperature
            values["within_class_weight"] = args.within_class_weight
        if self.uses_teacher:
            values["temperature"] = args.temperature
            values["scale_by_temperature_squared"] = args.scale_by_temperature_squared
        values["hard_label_weight"] = args.hard_label_weight
        return {**values, **self.card_values(args, subclasses)}

    def describe(self, meta: dict, num_classes: int) -> str:
        """The card's sentence on how the method trained the student ('' when the entry has none)."""
        return self.description.format(num_classes=num_classes, **meta) if self.description else ""

    def card_values(self, args: RunOptions, subclasses: SubclassSource | None = None) -> dict:
        """The run's own settings, as the source was really built (the ablation's switch, the members trained)."""
        values = {name: getattr(args, name) for name in self.card_fields}
        options = self.fit_options(args)
        for name in ("null_space", "rotate"):
            if name in values and options is not None:
                values[name] = getattr(options, name)
        if "ensemble_size" in values and subclasses is not None:
            values["ensemble_size"] = subclasses.num_members
        return values

    def search_grid(
        self, anchor: dict | None = None, values: Mapping[str, Sequence] | None = None, unlabelled: bool = False
    ) -> list[dict]:
        """The configurations the benchmark tries. `anchor`: the best configuration of `search_after`; `values`
        replaces a knob's candidates (e.g. a smoke grid); `unlabelled` groups subclasses by teacher prediction."""
        base = {}
        if self.search_after is not None:
            if anchor is None:
                raise ValueError(
                    f"{self.name} is tuned from {self.search_after}'s best learning rate and temperature."
                )
            base = {knob: anchor[knob] for knob in INHERITED_KNOBS}
        if unlabelled and self.subclass_source is not None:
            base["grouping"] = "prediction"  # per-class PCA / clusters over the teacher's predicted classes
        knobs = {knob: tuple((values or {}).get(knob, candidates)) for knob, candidates in self.search.items()}
        return [{**base, **dict(zip(knobs, chosen))} for chosen in itertools.product(*knobs.values())]


_REGISTRY: dict[str, Method] = {}
# The --method flag's argparse metadata (LELPConfig.method). A dataclass field's metadata is a live view of this
# dict, so register_method keeps --method's choices and help current for methods registered after import.
METHOD_FLAG: dict[str, Any] = {}


def register_method(method: Method, replace: bool = False) -> Method:
    if not method.name or not method.name.isidentifier():
        raise ValueError(f"A method name must be a plain identifier (a CLI value), got {method.name!r}.")
    if method.name in _REGISTRY and not replace:
        raise ValueError(f"Method '{method.name}' is already registered (pass replace=True to override it).")
    _REGISTRY[method.name] = method
    _refresh_flag()
    return method


def unregister_method(name: str) -> None:
    _REGISTRY.pop(name, None)
    _refresh_flag()


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise ValueError(f"--method must be one of {registered_methods()}, got '{name}'.")
    return _REGISTRY[name]


def registered_methods() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def _refresh_flag() -> None:
    teacherless = [f"'{name}'" for name, method in _REGISTRY.items() if not method.uses_teacher]
    METHOD_FLAG["help"] = (
        "Distillation method: "
        + "; ".join(f"'{name}': {method.help}" for name, method in _REGISTRY.items())
        + (f". Every method except {', '.join(teacherless)} reads the teacher from the cache." if teacherless else ".")
    )
    METHOD_FLAG["choices"] = registered_methods()  # argparse: --help lists them, a typo fails early


# --- The built-in methods. Search grids are the benchmark's staged search (ours): CE and KD from scratch, every
# other method from KD's best learning rate and τ.

LEARNING_RATES = (1e-3, 3e-3)
SUBCLASS_SEARCH = MappingProxyType({"num_subclasses": (2, 4, 8), "subclass_temperature": (0.5, 1.0, 2.0)})
FEATURE_SEARCH = MappingProxyType({"feature_loss_weight": (0.1, 1.0, 10.0)})
PROJECTION_CARD = ("grouping", "null_space", "rotate", "projection_seed")


def pseudo_subclass_method(name: str, help: str, source: SubclassRecipe, **overrides) -> Method:
    """An entry whose loss is LELP's, on the pseudo-subclasses of `source` (LELP and its ablations)."""
    entry = {
        "loss": subclass_term,
        "subclass_source": source,
        "training_modules": (subclass_head,),
        "search": SUBCLASS_SEARCH,
        "card_fields": PROJECTION_CARD,
        **overrides,
    }
    return Method(name=name, help=help, **entry)


def feature_method(name: str, help: str, term: LossTerm, **overrides) -> Method:
    """An embedding baseline: KD on the cached logits plus a feature term on the cached teacher embedding."""
    entry = {"search": FEATURE_SEARCH, "card_fields": ("feature_loss_weight",), **overrides}
    return Method(name=name, help=help, loss=kd_term, feature_loss=term, **entry)


register_method(
    pseudo_subclass_method(
        "lelp",
        "pseudo-subclass targets from null-space per-class PCA (the paper)",
        Projections(),
        description=(
            "the teacher's final-layer embeddings (the input of its output layer) were cached once, projected onto "
            "the null space of the output layer, split per class by PCA into S = {num_subclasses} randomly rotated "
            "pseudo-subclass directions, and the student learned the resulting {num_classes}·{num_subclasses} "
            "probabilities"
        ),
        paper="Linear Projections of Teacher Embeddings, [arXiv 2409.20449](https://arxiv.org/abs/2409.20449)",
    )
)
register_method(
    pseudo_subclass_method(
        "pca", "ablation: per-class PCA without the null-space projection", Projections(null_space=False)
    )
)
register_method(
    pseudo_subclass_method("no_rotation", "ablation: LELP without the random rotation", Projections(rotate=False))
)
register_method(
    pseudo_subclass_method(
        "random", "ablation: random null-space directions instead of principal ones", Projections(directions="random")
    )
)
register_method(
    pseudo_subclass_method(
        "random_ensemble",
        "ablation: mean loss over --ensemble_size (K) independent random projections of S directions each",
        Projections(directions="random", ensemble=True),
        search={"ensemble_size": (4,), **SUBCLASS_SEARCH},
        card_fields=("ensemble_size", *PROJECTION_CARD),
    )
)
register_method(
    pseudo_subclass_method("kmeans", "ablation: S k-means clusters per class (null space) as subclasses", KMeans())
)
register_method(
    pseudo_subclass_method(
        "oracle",
        "known fine labels (--fine_label_column) as subclasses: an upper bound",
        Oracle(),
        needs_labels="trains on known fine labels",
        # S is the number of fine labels and the within-class targets are one-hot: no knob of its own.
        search={"subclass_temperature": (1.0,)},
        card_fields=(),
    )
)
register_method(
    Method(
        name="kd",
        help="Hinton KD on the cached teacher logits",
        loss=kd_term,
        search={"learning_rate": LEARNING_RATES, "temperature": (1.0, 2.0, 4.0)},
        search_after=None,
    )
)
register_method(
    feature_method(
        "fitnet",
        "KD + MSE between a learned regression of the student features and the teacher embedding",
        fitnet_term,
        training_modules=(feature_regressor,),
    )
)
register_method(
    feature_method(
        "rkd", "KD + relational distance and angle losses between student features and teacher embeddings", rkd_term
    )
)
register_method(
    feature_method("pkt", "KD + probabilistic knowledge transfer (cosine-similarity distributions)", pkt_term)
)
register_method(
    Method(
        name="ce",
        help="labels only, no teacher",
        loss=ce_term,
        uses_teacher=False,
        needs_labels="trains on labels",
        search={"learning_rate": LEARNING_RATES},
        search_after=None,
    )
)
BUILTIN_METHODS = registered_methods()
