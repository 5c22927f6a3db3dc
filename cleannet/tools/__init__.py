"""The command-line tools of CleanNet (what train.py, inference.py, train_classifier.py and the
util/*.py scripts run; each module has a `run()` console entry point)."""
