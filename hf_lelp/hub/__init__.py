"""Hub: the model card (template beside it), what leaves the machine (publish), the export's files and its reload.
Imports base, data and methods.
"""
