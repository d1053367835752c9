"""Registry notification bodies: Distribution, Harbor, zot and CloudEvents, read into the model's
events.
"""
