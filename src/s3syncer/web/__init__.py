"""The HTTP face: the webhook fast path, the Quart-Trio app, the status document and page, the
server.
"""
