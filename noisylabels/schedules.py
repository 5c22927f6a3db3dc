"""The step-decay learning-rate schedule both training systems use, defined once.

    lr(step) = base · gamma^⌊step / stepsize⌋      (base alone when stepsize is None)

CleanNet's original computes it in float32 (tf.train.exponential_decay with staircase);
Caffe's "step" policy computes it in double and the net reads it as float. `compute_dtype`
keeps each original's arithmetic exactly; the result is float32.
"""

from typing import Optional

import keras
import tensorflow as tf


class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """base · gamma^⌊step / stepsize⌋ as a float32 tensor.

    Args:
      base: the rate at step 0 (> 0).
      gamma: the factor applied every `stepsize` steps.
      stepsize: steps between drops (≥ 1), or None for a fixed rate.
      compute_dtype: "float32" (TF1's exponential_decay) or "float64" (Caffe's double).
    """

    def __init__(self, base: float, gamma: float = 0.1, stepsize: Optional[int] = None,
                 compute_dtype: str = "float32"):
        if not base > 0:
            raise ValueError("the base learning rate must be positive, got %r" % (base,))
        if stepsize is not None and int(stepsize) < 1:
            raise ValueError("stepsize must be a positive integer or None, got %r" % (stepsize,))
        self.base = float(base)
        self.gamma = float(gamma)
        self.stepsize = None if stepsize is None else int(stepsize)
        self.compute_dtype = compute_dtype

    def __call__(self, step) -> tf.Tensor:
        dtype = tf.as_dtype(self.compute_dtype)
        if self.stepsize is None:
            return tf.cast(tf.constant(self.base, dtype), tf.float32)
        exponent = tf.cast(tf.cast(step, tf.int64) // self.stepsize, dtype)
        rate = tf.constant(self.base, dtype) * tf.pow(tf.constant(self.gamma, dtype), exponent)
        return tf.cast(rate, tf.float32)

    def get_config(self) -> dict:
        return {"base": self.base, "gamma": self.gamma, "stepsize": self.stepsize,
                "compute_dtype": self.compute_dtype}
