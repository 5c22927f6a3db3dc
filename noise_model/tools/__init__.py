"""The noisy-label model's command-line tools (run through the entry modules noise_model/*.py
or the console scripts)."""
