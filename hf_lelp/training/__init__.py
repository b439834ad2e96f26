"""Training: LELPConfig, the trainer, its callbacks, resumption, metrics, auto-tuning and the one-call preparation.
Imports every layer below.
"""
