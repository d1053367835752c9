"""Reading the config file: YAML in, a checked :class:`~s3syncer.model.config.Config` out, every
error at once.
"""
