"""The daemon: service, admission, supervision of the runners, reload and signals."""
