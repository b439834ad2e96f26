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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from hf_lelp.methods.losses import (
    ce_loss,
    export_fit_loss,
    fitnet_loss,
    flat_class_logits,
    kd_loss,
    lelp_loss,
    lelp_targets,
    pkt_loss,
    rkd_loss,
)
from hf_lelp.methods.modeling import (
    FEATURE_REGRESSOR,
    attach_feature_regressor,
    attach_subclass_head,
    auxiliary_module,
    start_classifier_at_flat_head,
)
from hf_lelp.methods.projections import FitOptions, fit_projections, load_or_fit_projections
from hf_lelp.methods.subclasses import fit_kmeans_subclasses, oracle_subclasses

if TYPE_CHECKING:
    from hf_lelp.cache.store import TeacherCache
    from hf_lelp.training.config import LELPConfig


class SubclassSource(Protocol):
    """What every pseudo-subclass source offers (SubclassProjections, KMeansSubclasses, OracleSubclasses)."""

    num_subclasses: int  # S, per class and per member
    num_members: int  # K, ensemble members (1 = no ensemble)
    columns: int  # S·K score columns per class: the width of the student's subclass head per class

    def subclass_scores(self, hidden: torch.Tensor, example_ids=None) -> torch.Tensor: ...  # [B, C, S·K]

    def to(self, device) -> SubclassSource: ...


# --- Pseudo-subclass sources: how a method builds its subclasses from the cache.


@dataclass
class SubclassInputs:
    """What a pseudo-subclass source is built from."""

    cache: TeacherCache
    args: LELPConfig
    fine_labels: Mapping[int, str] | None = None  # example id -> known fine label (the oracle's subclasses)
    save: bool = False  # keep fitted projections beside the cache (or at projections_path) and reuse them
    projections_path: str | None = None


class SubclassRecipe:
    """How a method builds its pseudo-subclass source: `recipe(SubclassInputs) -> SubclassSource`."""

    chooses_num_subclasses = True  # S (and β) are knobs; False where the source fixes S itself (the oracle)

    def fit_options(self, args: LELPConfig) -> FitOptions | None:
        """The projection options, for sources that are LELP projections (None otherwise)."""
        return None

    def num_members(self, args: LELPConfig) -> int:
        return 1

    def __call__(self, inputs: SubclassInputs) -> SubclassSource:
        raise NotImplementedError


@dataclass(frozen=True)
class Projections(SubclassRecipe):
    """LELP's projections (projections.py); each ablation switches off one step through its overrides."""

    null_space: bool = True
    rotate: bool = True
    directions: str = "pca"
    ensemble: bool = False  # K = --ensemble_size independent sets of S random directions

    def fit_options(self, args: LELPConfig) -> FitOptions:
        return FitOptions(
            num_subclasses=args.num_subclasses,
            grouping=args.grouping,
            null_space=args.null_space and self.null_space,
            rotate=args.rotate and self.rotate,
            seed=args.projection_seed,
            directions=self.directions,
            num_members=self.num_members(args),
        )

    def num_members(self, args: LELPConfig) -> int:
        return args.ensemble_size if self.ensemble else 1

    def __call__(self, inputs: SubclassInputs) -> SubclassSource:
        options = self.fit_options(inputs.args)
        if not inputs.save:
            return fit_projections(inputs.cache, options)
        # The main process fits and saves; the others then load the same file.
        with inputs.args.distributed_state.main_process_first():
            return load_or_fit_projections(inputs.cache, options, inputs.projections_path)


@dataclass(frozen=True)
class KMeans(SubclassRecipe):
    """S k-means clusters per class in the null space (subclasses.py)."""

    def __call__(self, inputs: SubclassInputs) -> SubclassSource:
        args = inputs.args
        # Deterministic (seeded) and cheap next to training, so every process fits it itself.
        return fit_kmeans_subclasses(inputs.cache, args.num_subclasses, args.grouping, args.projection_seed)


@dataclass(frozen=True)
class Oracle(SubclassRecipe):
    """Known fine labels as subclasses: S is the largest number of fine labels in a class."""

    chooses_num_subclasses = False

    def __call__(self, inputs: SubclassInputs) -> SubclassSource:
        if inputs.fine_labels is None:
            raise ValueError(
                "--method oracle needs known fine labels: pass --fine_label_column (or use 20newsgroups_binary / "
                "20newsgroups_4class, which have them)."
            )
        cache = inputs.cache
        ids = np.asarray(cache.example_ids)
        missing = [int(i) for i in ids if int(i) not in inputs.fine_labels]
        if missing:
            raise KeyError(
                f"--method oracle: {len(missing)} cached examples have no fine label (e.g. id {missing[0]})."
            )
        fine = [str(inputs.fine_labels[int(i)]) for i in ids]
        return oracle_subclasses(ids, np.asarray(cache.labels), fine, cache.num_labels)


# --- Loss terms: adapters from one training batch to the pure functions of losses.py.


@dataclass
class LossInputs:
    """One training batch as the loss terms see it (teacher fields are None for a method without the teacher)."""

    class_logits: torch.Tensor  # [B, C]
    labels: torch.Tensor | None = None
    subclass_logits: torch.Tensor | None = None  # [B, C·S·K] from the student's subclass head
    features: torch.Tensor | None = None  # the student's classifier input (feature methods)
    example_ids: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # cached teacher embedding h [B, D]
    teacher_logits: torch.Tensor | None = None  # cached teacher logits [B, C]
    subclasses: SubclassSource | None = None  # on the batch's device
    model: torch.nn.Module | None = None  # the student (training-only modules live on it)
    export_logits: torch.Tensor | None = None  # the C-class layer on detached features (flat head only)


LossTerm = Callable[[LossInputs, "LELPConfig"], torch.Tensor]


def ce_term(batch: LossInputs, args: LELPConfig) -> torch.Tensor:
    return ce_loss(batch.class_logits, batch.labels, args.label_smoothing_factor)


def kd_term(batch: LossInputs, args: LELPConfig) -> torch.Tensor:
    return kd_loss(batch.class_logits, batch.teacher_logits, args.temperature, args.scale_by_temperature_squared)


def subclass_term(batch: LossInputs, args: LELPConfig) -> torch.Tensor:
    """KL between the C·S pseudo-subclass targets of the batch's source and the student's C·S distribution."""
    source = batch.subclasses
    scores = source.subclass_scores(batch.hidden, batch.example_ids)
    targets = lelp_targets(
        scores, batch.teacher_logits, args.temperature, args.subclass_temperature, num_members=source.num_members
    )
    if batch.subclass_logits is None and scores.shape[-1] > 1:
        raise ValueError(
            f"--method {args.method} has {scores.shape[-1]} subclass columns but the student has no subclass head "
            "(attach_subclass_head with that many columns)."
        )
    flat = args.subclass_head == "flat" and batch.subclass_logits is not None
    loss = lelp_loss(
        batch.class_logits,
        batch.subclass_logits,
        targets,
        args.temperature,
        args.scale_by_temperature_squared,
        num_members=source.num_members,
        flat=flat,
    )
    if flat and batch.export_logits is not None:
        num_labels = batch.class_logits.shape[1]
        head_classes = flat_class_logits(batch.subclass_logits.detach(), num_labels, source.num_members)
        # Scaled like the soft loss: under one gradient-norm clip, an unscaled term would barely move the layer.
        fit_scale = args.temperature**2 if args.scale_by_temperature_squared else 1.0
        loss = loss + fit_scale * export_fit_loss(batch.export_logits, head_classes)
    return loss


def fitnet_term(batch: LossInputs, args: LELPConfig) -> torch.Tensor:
    regressor = auxiliary_module(batch.model, FEATURE_REGRESSOR)
    if regressor is None:
        raise ValueError("--method fitnet needs the regressor: attach_feature_regressor(student, ...).")
    return fitnet_loss(regressor(batch.features), batch.hidden)


def rkd_term(batch: LossInputs, args: LELPConfig) -> torch.Tensor:
    return rkd_loss(batch.features, batch.hidden)


def pkt_term(batch: LossInputs, args: LELPConfig) -> torch.Tensor:
    return pkt_loss(batch.features, batch.hidden)


# --- Training-only modules (never exported): `hook(student, num_labels, args, subclasses, teacher_size)`.

ModuleHook = Callable[[torch.nn.Module, int, "LELPConfig", Any, "int | None"], None]


def subclass_head(student, num_labels: int, args: LELPConfig, subclasses, teacher_size) -> None:
    """The C·S·K subclass head; S·K = 1 needs none (the class logits are the whole distribution)."""
    columns = subclasses.columns if subclasses is not None else 1
    if columns > 1:
        head = attach_subclass_head(student, num_labels, columns, seed=args.seed)
        if args.subclass_head == "flat":
            start_classifier_at_flat_head(student, num_labels, head)


def feature_regressor(student, num_labels: int, args: LELPConfig, subclasses, teacher_size) -> None:
    attach_feature_regressor(student, num_labels, teacher_size, seed=args.seed)


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

    @property
    def chooses_num_subclasses(self) -> bool:
        """S and β are knobs of this method (what --auto_hparams chooses)."""
        return self.subclass_source is not None and self.subclass_source.chooses_num_subclasses

    def fit_options(self, args: LELPConfig) -> FitOptions | None:
        return self.subclass_source.fit_options(args) if self.subclass_source is not None else None

    def num_members(self, args: LELPConfig) -> int:
        return self.subclass_source.num_members(args) if self.subclass_source is not None else 1

    def card_values(self, args: LELPConfig, subclasses: SubclassSource | None = None) -> dict:
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
    pseudo_subclass_method("lelp", "pseudo-subclass targets from null-space per-class PCA (the paper)", Projections())
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
