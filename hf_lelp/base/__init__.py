"""The ground floor: user errors and the command-line error contract, atomic file writes, run locks, optional
extras, option checks. Imports nothing of hf_lelp.
"""
