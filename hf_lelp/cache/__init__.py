"""The teacher cache: its format and reader (store), its writer (writer), the teacher pass that fills it and the
teacher's output head (heads). Imports base and data.
"""
