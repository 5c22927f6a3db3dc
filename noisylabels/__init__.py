"""The foundation both systems share (imports nothing from cleannet or noise_model): errors
and flags, the console, file input/output, progress, and the training core (run_directory,
training_loop) both training systems run on. See docs/architecture.md for one line per module."""
