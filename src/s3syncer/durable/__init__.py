"""What survives a restart: the journal of accepted events and the run history, written
atomically.
"""
