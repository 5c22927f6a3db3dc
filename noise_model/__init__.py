"""The noisy-label model of Xiao et al. (CVPR 2015) in TensorFlow 2 / Keras.

`data/` prepares and reads the data sets, `model/` holds the networks, the loss layer and the
Caffe import, `training/` runs the stages on the shared training loop, and `tools/` the
command lines (run as `python -m noise_model.NAME`; docs/architecture.md lists every module).
"""
