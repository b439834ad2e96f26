"""Data: loading and checking text-classification splits, label order, row identity, offline datasets and models,
transfer data. Imports hf_lelp.base only.
"""
