"""The exit codes of every subcommand: 0 done, 1 anything else, 2 bad config or flags."""

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
