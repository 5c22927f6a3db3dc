"""Caffe's SGD solver as a Keras optimizer: momentum, weight decay added to the gradient,
bias multipliers and the "step" learning-rate policy.

For every variable W with gradient g, at iteration t (counting from 0):

  lr_t        = base_lr · gamma^⌊t / stepsize⌋            ("step" policy; base_lr if
                                                            stepsize is None: "fixed")
  local_lr    = lr_t · (bias_lr_mult if W is a bias else 1)
  local_decay = weight_decay · (bias_decay_mult if W is a bias else 1)
  V ← momentum · V + local_lr · (g + local_decay · W)
  W ← W − V

then t ← t + 1 (the optimizer's `iterations`). A variable is a bias when its rank is 1
(every bias of our models is rank 1 and every kernel rank ≥ 2). Keras' SGD differs: it
applies the learning rate after the momentum sum and has no per-variable multipliers.

Being a `keras.optimizers.Optimizer`, CaffeSGD checkpoints with `tf.train.Checkpoint`
(its iteration count and one momentum slot per variable) and works under `tf.distribute`
the Keras way: called inside `strategy.run`, `apply_gradients` sums the replicas'
gradients, so each replica's loss must be its share of the global batch's loss (Σ over
its slice / the global batch).
"""

from typing import Optional

import keras
import tensorflow as tf

from noisylabels.schedules import StepDecay


def CaffeStepSchedule(base_lr: float, gamma: float = 0.1, stepsize: Optional[int] = None) -> StepDecay:
    """Caffe's "step" policy: base_lr · gamma^⌊step / stepsize⌋, computed in double as Caffe
    does ("fixed" when stepsize is None)."""
    return StepDecay(base_lr, gamma, stepsize, compute_dtype="float64")


class CaffeSGD(keras.optimizers.Optimizer):
    """Caffe's SGD update (see the module docstring).

    Args:
      base_lr: base learning rate (> 0).
      momentum: Caffe's momentum (0.9 in every stage of the paper).
      weight_decay: L2 decay added to the gradient (Caffe's coupled weight decay; not
        Keras' decoupled `weight_decay`, which stays off).
      gamma, stepsize: the "step" policy; stepsize None keeps base_lr.
      bias_lr_mult, bias_decay_mult: multipliers for rank-1 variables (Caffe's lr_mult /
        decay_mult of the bias blobs, relative to the weights').
    """

    def __init__(self, base_lr: float, momentum: float = 0.9, weight_decay: float = 0.0, gamma: float = 0.1,
                 stepsize: Optional[int] = None, bias_lr_mult: float = 2.0, bias_decay_mult: float = 1.0,
                 name: str = "caffe_sgd", **kwargs):
        super().__init__(learning_rate=CaffeStepSchedule(base_lr, gamma, stepsize), name=name, **kwargs)
        self.momentum = float(momentum)
        self.caffe_weight_decay = float(weight_decay)
        self.bias_lr_mult = float(bias_lr_mult)
        self.bias_decay_mult = float(bias_decay_mult)

    @property
    def schedule(self) -> StepDecay:
        """The learning-rate policy (call it with an iteration number)."""
        return self._learning_rate

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate) -> None:
        velocity = self.velocities[self._get_variable_index(variable)]
        bias = len(variable.shape) == 1
        local_lr = learning_rate * (self.bias_lr_mult if bias else 1.0)
        local_decay = self.caffe_weight_decay * (self.bias_decay_mult if bias else 1.0)
        value = tf.convert_to_tensor(variable)
        gradient = tf.cast(gradient, value.dtype)
        new_velocity = (self.momentum * tf.convert_to_tensor(velocity)
                        + tf.cast(local_lr, value.dtype) * (gradient + local_decay * value))
        self.assign(velocity, new_velocity)
        self.assign_sub(variable, new_velocity)

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        # Keras lists the variables it updates as children of the optimizer; a checkpoint
        # names each variable by its shortest path, so a nested model's weights (the joint
        # model's model/clean_net/conv1/...) would be saved under optimizer/ names. They
        # belong to the model: leave them out here (the slots and iterations stay).
        children = super()._trackable_children(save_type, **kwargs)
        children.pop("_trainable_variables", None)
        return children

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("learning_rate", None)
        schedule = self.schedule
        config.update(base_lr=schedule.base_lr, gamma=schedule.gamma, stepsize=schedule.stepsize,
                      momentum=self.momentum, weight_decay=self.caffe_weight_decay,
                      bias_lr_mult=self.bias_lr_mult, bias_decay_mult=self.bias_decay_mult)
        return config
