"""Running a command's process: its group, its output, its leftovers, its files and its
descriptors.
"""
