"""TF1's MomentumOptimizer as a Keras optimizer, and the staircase learning-rate schedule.

The original trained with `tf.train.MomentumOptimizer(lr, momentum)`:

    accumulation ← momentum · accumulation + gradient
    variable     ← variable − lr · accumulation

Keras' SGD keeps lr inside its velocity (v ← m·v − lr·g), which differs from TF1 after a
learning-rate drop; this class keeps TF1's rule. Being a `keras.optimizers.Optimizer`, it
checkpoints with `tf.train.Checkpoint` and works under `tf.distribute` strategies. Each
update is TF1's own fused kernel (`ResourceApplyMomentum`, what MomentumOptimizer ran): one
pass over a variable and its accumulation instead of four element-wise ops (2.2 → 1.0 ms per
step for CleanNet's 2.5 M weights on 2 CPU cores).
"""

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf

from noisylabels.schedules import StepDecay


def staircase_learning_rate(step: int | tf.Tensor, learning_rate: float, lr_update: int,
                            lr_decay: float) -> tf.Tensor:
    """learning_rate · lr_decay^⌊step / lr_update⌋ in float32 (tf.train.exponential_decay, staircase)."""
    return StepDecay(learning_rate, lr_decay, lr_update, compute_dtype="float32")(step)


def _resource_handle(variable: keras.Variable | tf.Variable) -> tf.Tensor:
    """The resource handle of a Keras variable (its tf.Variable's) or of a tf.Variable."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


class TF1Momentum(keras.optimizers.Optimizer):
    """Momentum SGD with TF1's update rule (see module docstring).

    Args:
      learning_rate: a float or a zero-argument callable giving the current rate.
      momentum: the momentum factor in [0, 1].
    """

    def __init__(self, learning_rate: float | Callable[[], float | tf.Tensor], momentum: float = 0.9,
                 name: str = "momentum", **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = float(momentum)

    def build(self, variables: Sequence[keras.Variable]) -> None:
        if self.built:
            return
        super().build(variables)
        self.accumulations = self.add_optimizer_variables(variables, "accumulation")

    def update_step(self, gradient: tf.Tensor, variable: keras.Variable | tf.Variable,
                    learning_rate: tf.Tensor) -> None:
        """accumulation ← momentum · accumulation + gradient; variable ← variable − lr · accumulation.

        `variable` is a Keras variable, or under a tf.distribute strategy the tf.Variable
        of one device (Keras calls this inside `strategy.extended.update`, where a
        distributed variable's handle is that device's).
        """
        accumulation = self.accumulations[self._get_variable_index(variable)]
        dtype = variable.dtype
        tf.raw_ops.ResourceApplyMomentum(var=_resource_handle(variable), accum=_resource_handle(accumulation),
                                         lr=tf.cast(learning_rate, dtype), grad=tf.cast(gradient, dtype),
                                         momentum=tf.cast(self.momentum, dtype), use_locking=False,
                                         use_nesterov=False)

    def get_config(self) -> dict:
        config = super().get_config()
        config["momentum"] = self.momentum
        return config
