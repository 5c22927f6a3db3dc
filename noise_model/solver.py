"""Caffe's SGD solver: momentum, weight decay added to the gradient, bias lr multiplier.

For every variable W with gradient g, at iteration t (counting from 0):

  lr_t        = base_lr · gamma^⌊t / stepsize⌋            ("step" policy; base_lr if
                                                            stepsize is None: "fixed")
  local_lr    = lr_t · (bias_lr_mult if W is a bias else 1)
  local_decay = weight_decay · (bias_decay_mult if W is a bias else 1)
  V ← momentum · V + local_lr · (g + local_decay · W)
  W ← W − V

then t ← t + 1. A variable is a bias when its rank is 1 (every bias of our models is
rank 1 and every kernel rank ≥ 2). This differs from Keras' SGD, which applies the
learning rate after the momentum sum and has no per-variable multipliers.
"""

import keras
import tensorflow as tf


def _tf_variable(variable):
    """The `tf.Variable` behind a Keras variable (or the variable itself)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


class _SlotIndex:
    """Maps id(variable) → position in the slot list (a plain object: not checkpointed)."""

    def __init__(self):
        self.by_id = {}
        self.variables = []  # keeps the variables alive so their ids stay unique


class CaffeSGD(tf.Module):
    """Caffe's SGD update (see the module docstring) as a checkpointable `tf.Module`.

    Args:
      base_lr: base learning rate (> 0).
      momentum: Caffe's momentum (0.9 in every stage of the paper).
      weight_decay: coupled L2 decay added to the gradient.
      gamma, stepsize: the "step" policy; stepsize None keeps base_lr.
      bias_lr_mult, bias_decay_mult: multipliers for rank-1 variables (Caffe's
        lr_mult / decay_mult of the bias blobs, relative to the weights').

    State: `iterations` (int64 variable) and one momentum slot per variable, in the order
    the variables were first seen. Slots are created by `build(variables)` or by the first
    `apply_gradients`; to restore a checkpoint, call `build` with the same variables in the
    same order first. Under a `tf.distribute` strategy create the slots with `build`
    inside the strategy's scope; `apply_gradients` called in a replica context averages
    the gradients over the replicas (each replica's loss being the mean over its own
    batch) and updates the mirrored variables once.
    """

    def __init__(self, base_lr, momentum=0.9, weight_decay=0.0, gamma=0.1, stepsize=None,
                 bias_lr_mult=2.0, bias_decay_mult=1.0, name=None):
        super().__init__(name=name)
        if not base_lr > 0:
            raise ValueError("base_lr must be positive, got %r" % (base_lr,))
        if stepsize is not None and int(stepsize) < 1:
            raise ValueError("stepsize must be a positive integer or None, got %r" % (stepsize,))
        self.base_lr = float(base_lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.gamma = float(gamma)
        self.stepsize = None if stepsize is None else int(stepsize)
        self.bias_lr_mult = float(bias_lr_mult)
        self.bias_decay_mult = float(bias_decay_mult)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.momentum_slots = []
        self._slot_index = _SlotIndex()

    def learning_rate(self, step):
        """float32 scalar tensor: base_lr · gamma^⌊step / stepsize⌋ (base_lr without stepsize)."""
        step = tf.cast(step, tf.int64)
        if self.stepsize is None:
            return tf.constant(self.base_lr, tf.float32)
        exponent = tf.cast(step // self.stepsize, tf.float64)
        rate = self.base_lr * tf.pow(tf.constant(self.gamma, tf.float64), exponent)
        return tf.cast(rate, tf.float32)

    def build(self, variables):
        """Creates the zero momentum slot of each variable that has none yet."""
        for variable in variables:
            self._slot(variable)

    def _slot(self, variable):
        variable = _tf_variable(variable)
        index = self._slot_index.by_id.get(id(variable))
        if index is not None:
            return self.momentum_slots[index]
        name = "momentum/" + variable.name.split(":")[0].replace("/", "_")
        with tf.init_scope():
            slot = tf.Variable(tf.zeros(variable.shape, variable.dtype), trainable=False,
                               name=name)
        self._slot_index.by_id[id(variable)] = len(self.momentum_slots)
        self._slot_index.variables.append(variable)
        self.momentum_slots.append(slot)
        return slot

    @staticmethod
    def _is_bias(variable):
        return len(variable.shape) == 1

    def apply_gradients(self, grads_and_vars):
        """Applies one Caffe SGD step to `(gradient, variable)` pairs (None gradients skipped).

        Returns the new value of `iterations`.
        """
        pairs = [(g, _tf_variable(v)) for g, v in grads_and_vars if g is not None]
        for _, variable in pairs:
            self._slot(variable)
        if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
            raise RuntimeError("call apply_gradients inside strategy.run (replica context)")
        if tf.distribute.has_strategy():
            context = tf.distribute.get_replica_context()
            grads = context.all_reduce(tf.distribute.ReduceOp.MEAN,
                                       [tf.convert_to_tensor(g) for g, _ in pairs])
            pairs = list(zip(grads, [v for _, v in pairs]))
            return context.merge_call(self._distributed_apply, args=(pairs,))
        return self._apply(pairs, update=lambda var, fn, *args: fn(var, *args))

    def _distributed_apply(self, strategy, pairs):
        def update(var, fn, *args):
            return strategy.extended.update(var, fn, args=args, group=True)
        return self._apply(pairs, update)

    def _apply(self, pairs, update):
        lr = self.learning_rate(self.iterations)
        updates = []
        for grad, variable in pairs:
            slot = self.momentum_slots[self._slot_index.by_id[id(variable)]]
            bias = self._is_bias(variable)
            local_lr = lr * (self.bias_lr_mult if bias else 1.0)
            local_decay = self.weight_decay * (self.bias_decay_mult if bias else 1.0)

            def step(var, grad, slot, local_lr=local_lr, local_decay=local_decay):
                value = tf.convert_to_tensor(var)
                grad = tf.cast(tf.convert_to_tensor(grad), value.dtype)
                velocity = (self.momentum * tf.convert_to_tensor(slot)
                            + tf.cast(local_lr, value.dtype) * (grad + local_decay * value))
                slot.assign(velocity)
                return var.assign_sub(velocity)

            updates.append(update(variable, step, grad, slot))
        with tf.control_dependencies([tf.group(updates)] if updates else []):
            return self.iterations.assign_add(1)
