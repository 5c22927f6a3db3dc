"""Data tools shared by CleanNet and the noisy-label model (TSV → .npy, references, checks)."""
