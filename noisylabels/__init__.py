"""The shared, TensorFlow-light foundation of both systems (imports nothing from cleannet or
noise_model): errors and flags, file input/output, the TSV and .npy readers, the CleanNet
data tools (convert_data, find_reference, heldout_train_data, make_cleaned_list), and the
training core (run_directory, training_loop) both training systems run on.
See docs/architecture.md for one line per module."""
