"""The classifier trained with CleanNet's per-sample weights (the tool: cleannet/tools/train_classifier.py).

- `data.py`: labelled features (TSV or .npy) and checked image lists;
- `weights.py`: inference's sample-weight file and the per-sample weights joined by key;
- `model.py`: the Keras models (feature head; backbone + head);
- `training.py`: `model.fit` with the resume, finite-loss, progress and TensorBoard
  callbacks; `train_classifier` (features) and `train_image_classifier` (image lists),
  each returning the final test accuracy.

Keras and TensorFlow are imported by the functions that use them, so that the command
line's flag and file errors come before they load.
"""
