"""Training the noisy-label model: solver settings, the Caffe solver, a stage as a
training-loop task, testing, summaries."""
