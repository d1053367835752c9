"""The command line: every subcommand, and the original tool's single-dash flags."""
