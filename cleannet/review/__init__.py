"""The review page of CleanNet's verdicts and the verification queue (util/report.py, util/merge_queue.py)."""
