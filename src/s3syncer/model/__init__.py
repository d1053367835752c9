"""The model: config, events and their rules, runs, and the answers to a request. Imports nothing
of ours.
"""
