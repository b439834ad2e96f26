"""The columns every loaded split carries, shared by the loaders in load.py and offline_datasets.py."""

EXAMPLE_ID = "example_id"
TEXT = "text"
LABEL = "label"
FINE_LABEL = "fine_label"  # optional: known subclasses (the `oracle` method, the explorer's agreement score)
UNLABELLED = -1  # label value of transfer examples without a label
