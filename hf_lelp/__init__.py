"""hf-lelp: LELP few-class distillation (Loo et al., arXiv 2409.20449) on top of Hugging Face transformers."""

__version__ = "0.1.0"

from .cache import CacheMismatchError, CorruptCacheError, TeacherCache  # noqa: E402
from .config import LELPConfig  # noqa: E402
from .data import (  # noqa: E402
    TextClassificationData,
    as_text_classification_split,
    load_text_classification,
    tokenize_split,
)
from .label_order import align_to_teacher  # noqa: E402
from .losses import ce_loss, fitnet_loss, kd_loss, lelp_loss, lelp_targets, pkt_loss, rkd_loss  # noqa: E402
from .metrics import build_compute_metrics  # noqa: E402
from .modeling import attach_feature_regressor, attach_subclass_head, load_student  # noqa: E402
from .projections import FitOptions, SubclassProjections, fit_projections, load_or_fit_projections  # noqa: E402
from .subclasses import fit_kmeans_subclasses, oracle_subclasses  # noqa: E402
from .teacher_pass import build_teacher_cache  # noqa: E402
from .trainer import LELPTrainer  # noqa: E402
from .transfer import carve_validation, with_transfer_data  # noqa: E402

__all__ = [
    "CacheMismatchError",
    "CorruptCacheError",
    "FitOptions",
    "LELPConfig",
    "LELPTrainer",
    "SubclassProjections",
    "TeacherCache",
    "TextClassificationData",
    "align_to_teacher",
    "as_text_classification_split",
    "attach_feature_regressor",
    "attach_subclass_head",
    "build_compute_metrics",
    "build_teacher_cache",
    "carve_validation",
    "ce_loss",
    "fit_kmeans_subclasses",
    "fit_projections",
    "fitnet_loss",
    "kd_loss",
    "lelp_loss",
    "lelp_targets",
    "load_or_fit_projections",
    "load_student",
    "load_text_classification",
    "oracle_subclasses",
    "pkt_loss",
    "rkd_loss",
    "tokenize_split",
    "with_transfer_data",
]
