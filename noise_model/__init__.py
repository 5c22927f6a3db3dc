"""The noisy-label model of Xiao et al. (CVPR 2015) in TensorFlow 2 / Keras."""
