"""Benchmark: CIFAR10-quick training step with the noisy-label objective vs plain cross-entropy.

    python bench/bench_noise_loss.py                    # default: batch 100, 30 timed steps
    python bench/bench_noise_loss.py --preset=medium    # 200 timed steps (same as --steps=200)

The sizes are those of the CIFAR-10 experiment (batch 100, 32×32, 10 classes); there is
no Food-101N setting here (the noisy-label model is not trained on Food-101N).

Both are `tf.function` steps with the same optimizer (noise_model.training.solver.CaffeSGD: lr
0.001, momentum 0.9, weight decay 0.004, bias lr × 2) on float32 [100, 32, 32, 3] batches
of random images:
  - baseline: the clean net `CifarQuick(10)` alone, softmax cross-entropy on the clean
    label (docs/originals.md#noisy-label-model-cifar-10-protocol stage 1);
  - ours (joint, docs/originals.md#noisy-label-model-cifar-10-protocol stage 4): `CifarQuick(10)` + the noise-type net
    `CifarQuick(3)`, loss = masked clean CE + masked noise-type CE + `NoisyLabelLoss`,
    with labels mixed as in the CIFAR-10 mixed set (20% clean labels, 80% noisy labels,
    20% noise-type labels, −1 elsewhere).
The two are timed in alternation (5 rounds), so that both see the same load on a shared
machine. Prints the median ms/step of both and the ratio joint / baseline (the joint
step runs two CNNs, so about 2× is the floor; the rest is the loss layer's cost).
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags

from bench import common
from noisylabels.errors import check_flag
from noisylabels.flagutil import run_tool

NUM_CLASSES = 10
PRESETS = {"default": dict(steps=30, batch_size=100), "medium": dict(steps=200, batch_size=100)}


def make_batch(batch_size, seed=0):
    """Random images and mixed labels: (images [B,32,32,3], clean [B], noisy [B], ntype [B])."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.normal(0, 50, (batch_size, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, batch_size)
    has_clean = rng.random(batch_size) < 0.2
    clean = np.where(has_clean, labels, -1).astype(np.int32)
    noisy = np.where(has_clean, -1, rng.integers(0, NUM_CLASSES, batch_size)).astype(np.int32)
    ntype = np.where(has_clean, rng.integers(0, 3, batch_size), -1).astype(np.int32)
    return images, clean, noisy, ntype


def random_matrix_c(num_classes, seed=0):
    """A column-stochastic L×L matrix with a zero diagonal (C's shape after estimation)."""
    import numpy as np

    matrix = np.random.default_rng(seed).random((num_classes, num_classes))
    np.fill_diagonal(matrix, 0.0)
    return matrix / matrix.sum(axis=0, keepdims=True)


def make_optimizer():
    from noise_model.training.solver import CaffeSGD

    return CaffeSGD(base_lr=0.001, momentum=0.9, weight_decay=0.004, bias_lr_mult=2.0)


def baseline_step_fn():
    """The clean net alone with sparse softmax cross-entropy (all labels present)."""
    import tensorflow as tf
    from noise_model.model.models import CifarQuick, build_model

    model = build_model(CifarQuick(NUM_CLASSES, name="clean_net"), 32)
    optimizer = make_optimizer()
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def joint_step_fn():
    """Clean net + noise-type net with clean CE + noise-type CE + NoisyLabelLoss (weights 1)."""
    import tensorflow as tf
    from noise_model.model.layers import NoisyLabelLoss, masked_cross_entropy
    from noise_model.model.models import CifarQuick, build_model

    clean_net = build_model(CifarQuick(NUM_CLASSES, name="clean_net"), 32)
    ntype_net = build_model(CifarQuick(3, name="ntype_net"), 32)
    noisy_loss = NoisyLabelLoss(random_matrix_c(NUM_CLASSES), update_noise_lr=1.0)
    optimizer = make_optimizer()
    variables = clean_net.trainable_variables + ntype_net.trainable_variables
    optimizer.build(variables)

    @tf.function
    def step(images, clean, noisy, ntype):
        with tf.GradientTape() as tape:
            clean_logits = clean_net(images, training=True)
            ntype_logits = ntype_net(images, training=True)
            loss = (masked_cross_entropy(clean, clean_logits) + masked_cross_entropy(ntype, ntype_logits)
                    + noisy_loss([clean_logits, ntype_logits, noisy]))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def run_benchmark(steps, batch_size=100, warmup_steps=3):
    """Returns dict: joint_ms, baseline_ms (per step), ratio (joint / baseline)."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    images, clean, noisy, ntype = (tf.constant(a) for a in make_batch(batch_size))
    all_labels = tf.constant(np.maximum(clean.numpy(), noisy.numpy()))  # every sample labelled
    baseline = baseline_step_fn()
    joint = joint_step_fn()
    seconds = common.interleaved_median_seconds(
        {"baseline": lambda: float(baseline(images, all_labels)),
         "joint": lambda: float(joint(images, clean, noisy, ntype))}, steps, warmup=warmup_steps)
    base_s, joint_s = seconds["baseline"], seconds["joint"]
    return {"joint_ms": 1000 * joint_s, "baseline_ms": 1000 * base_s, "ratio": common.ratio(joint_s, base_s),
            "peak_rss_mb": common.peak_rss_mb()}


def report(results, steps, batch_size):
    common.print_table(
        "noisy-label loss: CIFAR10-quick, batch %d, 32x32, %d timed steps" % (batch_size, steps),
        [("joint (2 nets, CE + CE + NoisyLabelLoss)", results["joint_ms"], "ms/step"),
         ("baseline (clean net, softmax CE)", results["baseline_ms"], "ms/step"),
         ("ratio joint/baseline", results["ratio"], "x"),
         ("peak RSS (this process)", results["peak_rss_mb"], "MiB")])


def define_flags():
    flags.DEFINE_enum("preset", "default", list(PRESETS), "Size preset; explicit size flags override it.")
    flags.DEFINE_integer("steps", None, "Timed steps per variant (default preset: 30).")
    flags.DEFINE_integer("warmup_steps", 3, "Untimed steps first (tracing).")
    flags.DEFINE_integer("batch_size", None, "Images per step (Caffe's CIFAR-10 batch: 100).")


def main(argv):
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "preset", "unexpected arguments %s" % argv[1:])
    sizes = common.sizes_from_flags(PRESETS, ("steps", "batch_size"))
    check_flag(FLAGS.warmup_steps >= 0, "warmup_steps", "must be 0 or more, got %d" % FLAGS.warmup_steps)
    results = run_benchmark(sizes["steps"], sizes["batch_size"], FLAGS.warmup_steps)
    report(results, sizes["steps"], sizes["batch_size"])


if __name__ == "__main__":
    define_flags()
    run_tool(main)
