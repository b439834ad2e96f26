"""Command-line parsing shared by the recipes: dataclasses -> flags, a YAML/JSON config file, CLI overrides."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import yaml
from transformers import HfArgumentParser

from hf_lelp.base.errors import UserError
from hf_lelp.base.extras import check_report_to
from hf_lelp.base.validation import check_option_values, checked_config_values
from hf_lelp.methods.scratch_student import parse_student_config

DEFAULT_DATASET = "rotten_tomatoes"  # the offline demo data, loaded when no dataset and no file is given
# The flags below that a resumed run may change (hf_lelp/training/resume.py): the others make the run. Data and
# models are named by paths whose content is fingerprinted instead (the train split's rows, the teacher cache, the
# student's architecture and weights); evaluation data is not trained on; the rest batches the teacher pass or
# shapes the report and the export. (Not field metadata: HfArgumentParser passes that to argparse.)
RESUMABLE_FLAGS = (
    *("dataset", "train_file", "validation_file", "test_file", "transfer_data", "encoding"),
    *("eval_split", "max_eval_examples"),
    *("teacher", "student", "cache_dir", "cache_shard_size", "teacher_batch_size", "projections_path"),
    *("baseline_results", "extra_metrics", "merge_lora"),
)


@dataclass
class DataArguments:
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Offline short name (rotten_tomatoes, tweets, reuters8, 20newsgroups), a local csv/json/jsonl/"
            f"parquet file, or a Hub dataset id (needs the Hub). Default: {DEFAULT_DATASET}, unless --train_file/"
            "--validation_file/--test_file give the data (never both)."
        },
    )
    train_file: str | None = field(default=None, metadata={"help": "Local training (transfer) file."})
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file."})
    test_file: str | None = field(default=None, metadata={"help": "Local test file."})
    encoding: str = field(default="utf-8", metadata={"help": "Text encoding of local csv/json files."})
    text_column: str = field(default="text", metadata={"help": "Name of the text column."})
    label_column: str = field(default="label", metadata={"help": "Name of the label column."})
    fine_label_column: str | None = field(
        default=None,
        metadata={
            "help": "Column of known fine labels (subclasses) for --method oracle; the offline 20newsgroups_binary "
            "and 20newsgroups_4class groupings have one built in."
        },
    )
    class_names: list[str] | None = field(
        default=None, metadata={"help": "Class names in label-id order; inferred (sorted) from the data when omitted."}
    )
    max_length: int = field(default=128, metadata={"help": "Token limit for teacher and student inputs."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Seeded random cap on the train split."})
    max_eval_examples: int | None = field(default=None, metadata={"help": "Seeded random cap on the eval split."})
    subset_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the --max_*_examples subsets. Separate from --seed so that training seeds vary the "
            "run, not the data (and the teacher cache stays valid across seeds)."
        },
    )
    eval_split: str = field(
        default="test",
        metadata={
            "help": "Split reported once after training (never used for model selection, which runs on "
            "'validation'); '' = no final evaluation."
        },
    )
    transfer_data: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled text to distil on instead of the train split: a .txt file (one text per line), a "
            "csv/tsv/json/jsonl/parquet file (its --text_column; any label column is ignored), or the name of a "
            "split of --dataset whose labels are dropped. Labelled splits then serve only for evaluation."
        },
    )
    max_transfer_examples: int | None = field(
        default=None, metadata={"help": "Seeded random cap on --transfer_data (seeded by --subset_seed)."}
    )
    validation_from_train: int = field(
        default=0,
        metadata={
            "help": "Carve this many labelled train examples (seeded) into a 'validation' split, removed from the "
            "train split, for --auto_hparams or model selection when the dataset ships no validation split."
        },
    )

    def __post_init__(self) -> None:
        check_option_values(self)  # `max_length: 2.5` from a config file
        # 0 would train on empty inputs and negatives fail far away, in the tokenizer.
        _check_at_least("max_length", self.max_length, 2, "an input needs at least its [CLS] and [SEP] tokens")
        for name in ("max_train_examples", "max_eval_examples", "max_transfer_examples"):
            if getattr(self, name) is not None:
                _check_at_least(name, getattr(self, name), 1)
        _check_at_least("validation_from_train", self.validation_from_train, 0, "0 carves no validation split")
        self.source()  # --dataset and files together: refused before any work
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            repeated = sorted({name for name in self.class_names if self.class_names.count(name) > 1})
            raise UserError(
                f"--class_names {' '.join(self.class_names)} repeats {repeated}: give each class one distinct name, "
                "in label-id order."
            )

    def data_files(self) -> dict[str, str] | None:
        files = {"train": self.train_file, "validation": self.validation_file, "test": self.test_file}
        files = {k: v for k, v in files.items() if v}
        return files or None

    def source(self) -> str | None:
        """What to load: --dataset; None when files give the data; the offline default when neither is given."""
        files = self.data_files()
        if self.dataset and files:
            shown = ", ".join(f"--{split}_file {path}" for split, path in files.items())
            raise UserError(
                f"Both --dataset {self.dataset} and {shown} were given: which one is the data? Pass the files alone "
                "(they are the data) or --dataset alone, on the command line or in the config file."
            )
        return self.dataset or (None if files else DEFAULT_DATASET)

    def data_name(self) -> str:
        """The data's name in results, caches and cards: the dataset, else the train (or first) file's name."""
        files = self.data_files()
        if files and not self.dataset:
            return os.path.basename(files.get("train") or next(iter(files.values())))
        return self.source()

    def caps(self) -> dict[str, int]:
        caps = {"train": self.max_train_examples}
        for split in ("test", "validation", self.eval_split):
            caps[split] = self.max_eval_examples
        return {k: v for k, v in caps.items() if v}


DEFAULT_STUDENT = "all-MiniLM-L6-v2"
DEFAULT_STUDENT_LAYERS = 2  # ours: the first 2 of MiniLM-L6's 6 layers, a 3x smaller student


@dataclass
class ModelArguments:
    teacher: str | None = field(
        default=None,
        metadata={"help": "Fine-tuned teacher classifier (folder or Hub id); train one with `hf-lelp train-teacher`."},
    )
    student: str | None = field(
        default=None, metadata={"help": f"Student checkpoint: short name, folder, Hub id (default {DEFAULT_STUDENT})."}
    )
    student_num_layers: int | None = field(
        default=DEFAULT_STUDENT_LAYERS,
        metadata={
            "help": "Keep only the first k layers of the student checkpoint (our default 2: a 3x smaller MiniLM; "
            "None: all). With --student_config the config says the layers: another value than the default is refused."
        },
    )
    student_config: str | None = field(
        default=None,
        metadata={
            "help": "Train a student from scratch instead of fine-tuning --student: a small BERT-style encoder, "
            "randomly initialised, with the tokenizer and vocabulary of --teacher (of --student when no teacher is "
            "named). A preset (tiny, mini, small, medium: the BERT miniatures), key=value pairs "
            "('layers=2,hidden=128,heads=2'; also intermediate, dropout) or a JSON config file."
        },
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Teacher cache folder; built when missing, reused when its fingerprint matches. Default: "
            "$HF_LELP_CACHE/teacher_caches/<teacher>-<hash of teacher, data and cache options> ($HF_LELP_CACHE "
            "defaults to ~/.cache/hf_lelp), never inside --output_dir, which is what gets published."
        },
    )
    cache_dtype: str = field(default="float32", metadata={"help": "float32, float16 or bfloat16 for cached h."})
    teacher_batch_size: int = field(default=64, metadata={"help": "Batch size of the teacher pass."})
    cache_shard_size: int = field(
        default=8192, metadata={"help": "Rows per cache shard: the unit of resumption and of work per process."}
    )
    teacher_head_module: str | None = field(
        default=None,
        metadata={"help": "Name of the teacher's output nn.Linear when it cannot be found automatically."},
    )
    projections_path: str | None = field(
        default=None,
        metadata={
            "help": "Where fitted projections live; default: inside the cache folder, named by the fit options."
        },
    )
    baseline_results: list[str] = field(
        default_factory=list,
        metadata={"help": "results.json files of other students (e.g. --method ce) to list in the model card."},
    )
    use_peft: bool = field(default=False, metadata={"help": "Train the student with LoRA adapters (PEFT)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names to adapt; default: PEFT's choice for the architecture."}
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "Export the student with LoRA merged into its weights: a plain model for the Hub."},
    )
    extra_metrics: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Metrics added to accuracy/macro_f1, loaded through `evaluate`: accuracy, f1, precision, recall, "
            "matthews_correlation (shipped with hf-lelp, work offline), any other `evaluate` metric name (Hub, or "
            "evaluate's cache offline), or the path of a metric script. One that cannot load is an error."
        },
    )

    def __post_init__(self) -> None:
        check_option_values(self)
        if self.student_config is not None:
            try:  # a bad value is said before any data is read or any teacher runs
                parse_student_config(self.student_config)
            except ValueError as error:
                raise UserError(str(error)) from None
            # The default of --student_num_layers cannot be told from the same value given: only others are refused.
            layers = self.student_num_layers if self.student_num_layers != DEFAULT_STUDENT_LAYERS else None
            self.student_num_layers = None
            pretrained = (("student_num_layers", layers), ("use_peft", self.use_peft))
            # With a teacher, the tokenizer is the teacher's: a --student checkpoint would have no part in the run.
            pretrained += (("student", self.student if self.teacher else None),)
            for flag, given in pretrained:
                if given:
                    raise UserError(
                        f"--{flag} applies to a pretrained --student checkpoint, but --student_config "
                        f"{self.student_config} trains a new model from scratch: drop --{flag} (the layers of a "
                        "from-scratch student are set in --student_config, e.g. 'layers=2,hidden=128,heads=2')."
                    )
        if self.student is None and not (self.student_config and self.teacher):
            self.student = DEFAULT_STUDENT  # with --student_config and no teacher: the tokenizer's source
        _check_at_least("teacher_batch_size", self.teacher_batch_size, 1)
        _check_at_least("cache_shard_size", self.cache_shard_size, 1)
        _check_at_least("lora_r", self.lora_r, 1)

    def teacher_pass_options(self) -> dict:
        """build_teacher_cache's options from these flags."""
        names = {"teacher_batch_size": "batch_size", "cache_dtype": "dtype", "cache_shard_size": "shard_size"}
        options = {option: getattr(self, flag) for flag, option in names.items()}
        return {**options, "teacher_name": self.teacher, "head_module": self.teacher_head_module}


def _check_at_least(flag: str, value: int, minimum: int, why: str = "") -> None:
    if value < minimum:
        why = f" ({why})" if why else ""
        raise UserError(
            f"--{flag} must be at least {minimum}{why}, got {value}: set it to {minimum} or more, on the command "
            "line or in the config file."
        )


def parse_with_config(dataclass_types, argv: list[str] | None = None):
    """Parse `[config.yaml|config.json] [--flag value ...]`: values from the file, CLI flags override them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    config_path = None
    if argv and argv[0].endswith((".yaml", ".yml", ".json")) and not argv[0].startswith("-"):
        config_path = argv.pop(0)
    elif "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise UserError("--config needs a path: --config my_run.yaml.")
        config_path = argv[index + 1]
        del argv[index : index + 2]
    if config_path:
        values = read_config(config_path)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"Unknown keys in {config_path}: {unknown}. Each key must be a command-line flag name.")
        parser.set_defaults(**checked_config_values(parser, values, config_path))
    parsed = parser.parse_args_into_dataclasses(args=argv)
    for values in parsed:  # an integration whose package is missing: named here, not in the Trainer's traceback
        check_option_values(values)  # NaN / inf from the command line, also in the plain TrainingArguments
        if hasattr(values, "report_to"):
            check_report_to(values.report_to)
    return parsed


def run_job(job, dataclass_types, argv: list[str] | None = None) -> dict:
    """A command: its flags parsed (config file first), logging set, `job(*arguments)` run, its results printed on
    the main process and returned."""
    arguments = parse_with_config(dataclass_types, argv)
    training = arguments[-1]
    setup_logging(training.should_log)  # the "Data: ..." line says what the run trains on
    results = job(*arguments)
    if training.should_save:
        print(json.dumps(results, indent=2))
    return results


def read_config(path: str) -> dict:
    """The flag values of a YAML/JSON config file; a missing or garbled file is a UserError naming it."""
    if not os.path.exists(path):
        raise UserError(f"Config file {path} not found (working directory: {os.getcwd()}). Check the path.")
    if not os.path.isfile(path):
        raise UserError(f"Config file {path} is a folder, not a .yaml/.json file.")
    kind = "JSON" if path.endswith(".json") else "YAML"
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle) if kind == "JSON" else yaml.safe_load(handle)
    except json.JSONDecodeError as error:
        raise UserError(
            f"Config file {path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}. "
            "Fix the file (JSON needs double quotes and no trailing commas)."
        ) from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise UserError(
            f"Config file {path} is not valid YAML{where}: {problem}. Fix the file (one `flag: value` per line)."
        ) from error
    except UnicodeDecodeError as error:
        raise UserError(f"Config file {path} is not UTF-8 text (byte {error.start}). Save it as UTF-8.") from error
    if values is None:  # an empty file
        return {}
    if not isinstance(values, dict):
        raise UserError(
            f"Config file {path} must hold a mapping of flag names to values, not a {type(values).__name__}."
        )
    return values


def setup_logging(should_log: bool) -> None:
    """hf_lelp's own progress lines at INFO on the main process; warnings only elsewhere."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("hf_lelp").setLevel(logging.INFO if should_log else logging.WARNING)
    # One progress bar per long stage (teacher pass, training, evaluation): no bars for loading or writing a
    # checkpoint's tensors or for tokenising, which take a moment each and would repeat at every save.
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
