"""hf-lelp: LELP few-class distillation (Loo et al., arXiv 2409.20449) on top of Hugging Face transformers."""

from hf_lelp.base.version import __version__
from hf_lelp.cache.store import CacheMismatchError, CorruptCacheError, TeacherCache
from hf_lelp.cache.teacher_pass import build_teacher_cache
from hf_lelp.data.label_order import align_to_teacher
from hf_lelp.data.load import TextClassificationData, as_text_classification_split, load_text_classification
from hf_lelp.data.tokens import tokenize_split
from hf_lelp.data.transfer import carve_validation, with_transfer_data
from hf_lelp.methods.losses import ce_loss, fitnet_loss, kd_loss, lelp_loss, lelp_targets, pkt_loss, rkd_loss
from hf_lelp.methods.modeling import attach_feature_regressor, attach_subclass_head, load_student
from hf_lelp.methods.projections import FitOptions, SubclassProjections, fit_projections, load_or_fit_projections
from hf_lelp.methods.scratch_student import student_from_config
from hf_lelp.methods.subclasses import fit_kmeans_subclasses, oracle_subclasses
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.metrics import build_compute_metrics
from hf_lelp.training.trainer import LELPTrainer

__all__ = [
    "__version__",
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
    "student_from_config",
    "tokenize_split",
    "with_transfer_data",
]
