"""Benchmark: CleanNet training steps/s, our Trainer.train_step against the original's loop.

    python bench/bench_train.py                     # default: 20 classes, 2048 dims, 32 refs
    python bench/bench_train.py --preset=medium     # 101 classes, 20k verified / 20k all rows
    python bench/bench_train.py --preset=food101n   # 101 classes, 310k rows (tables ~5 GB)

Ours: `cleannet.trainer.Trainer.train_step` (a tf.function) fed by the index pipeline
of cleannet.data; the features and each sample's reference set ref[class_id] are
gathered inside the graph. Run with --jit_compile off and (with --compare_jit) on.

Baseline (the original's data path): each step draws the verified and class-balanced
unverified rows on the host, builds the [B, R, h] reference tensor in NumPy with a
Python loop over the samples, and runs an eager (un-compiled) forward/backward pass and
update of the same model, loss and optimizer.

Both use batch_size_sup + batch_size_unsup samples per step (default 32 + 32). The
variants are timed in alternation (5 rounds of steps/5 steps each, after
`--warmup_steps` untimed steps), so that each sees the same load on a shared machine.
Prints steps/s (1 / median step time) and the ratio ours / baseline.

Also timed in the same alternation: ours with the per-sample reference encoder
(`model.share_reference_encoder = False`: every sample's reference set through the
encoder, the step before the encoder was shared per class), and the ratio shared /
per-sample. The dense-layer GFLOP/s of both is printed (FLOPs of the matrix products,
forward and backward, see `step_products`), next to the same products run one after
another by tf.matmul: timed in the same alternation (median, under the steps' load) and
then alone (fastest of --steps calls).
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

PRESETS = {
    "default": dict(num_classes=20, img_dim=2048, num_ref=32, num_samples=2000, steps=20),
    "medium": dict(num_classes=101, img_dim=2048, num_ref=32, num_samples=20000, steps=30),
    "food101n": dict(num_classes=101, img_dim=2048, num_ref=32, num_samples=common.FOOD101N["num_samples"],
                     steps=50),
}


def make_config(data_dir, num_classes, img_dim, num_ref, batch_size_sup, batch_size_unsup, jit_compile,
                dropout_rate=0.0):
    from cleannet.trainer import TrainConfig

    del num_classes
    return TrainConfig(data_dir=data_dir, checkpoint_dir=os.path.join(data_dir, "ckpt"),
                       log_dir=os.path.join(data_dir, "log"), img_dim=img_dim, num_ref=num_ref,
                       batch_size_sup=batch_size_sup, batch_size_unsup=batch_size_unsup,
                       val_batch_size=16, jit_compile=jit_compile, dropout_rate=dropout_rate)


class OursStep:
    """Callable running one Trainer.train_step on the index pipeline.

    share: the model's share_reference_encoder (False: every sample's reference set goes
    through the encoder, the per-sample computation). `distinct_classes` records the number
    of distinct classes of each batch run (for the FLOP count).
    """

    def __init__(self, config, tables, share=True):
        import numpy as np
        from cleannet import data
        from cleannet.trainer import Trainer

        self.np = np
        self.tables = tables
        self.trainer = Trainer(config, tables)
        if not config.jit_compile:  # the Trainer keeps the per-sample encoder under XLA
            self.trainer.model.share_reference_encoder = share  # before the step is first traced
        self.batches = iter(data.training_indices(len(tables.train_features), tables.all_offsets,
                                                  config.batch_size_sup, config.batch_size_unsup, config.seed))
        self.distinct_classes = []

    def __call__(self):
        sup, unsup = next(self.batches)
        out = self.trainer.train_step(sup, unsup)
        loss = float(out["loss"])  # waits for the step, as a training loop that logs does
        tb = self.tables
        classes = self.np.concatenate([tb.train_class_ids[sup.numpy()], tb.all_class_ids[unsup.numpy()]])
        self.distinct_classes.append(len(self.np.unique(classes)))
        return loss


def make_ours_step(config, tables, share=True):
    """A zero-argument function running one Trainer.train_step on the index pipeline."""
    return OursStep(config, tables, share)


def dense_products(rows, fan_in, units, input_gradient=True):
    """The matrix products of one dense layer's forward and backward pass on `rows` rows.

    Forward x·W [rows, fan_in]×[fan_in, units]; kernel gradient xᵀ·dy [fan_in, rows]×[rows,
    units]; input gradient dy·Wᵀ [rows, units]×[units, fan_in], unless the input is data
    (the first layer of an encoder). Bias, tanh and other element-wise work is not counted.

    Returns:
      list of (m, k, n): an [m, k]×[k, n] product each (2·m·k·n FLOPs).
    """
    products = [(rows, fan_in, units), (fan_in, rows, units)]
    if input_gradient:
        products.append((rows, units, fan_in))
    return products


def step_products(batch, num_ref, img_dim, hidden0_sets, attended_sets):
    """The dense-layer matrix products (m, k, n) of one training step, forward + backward.

    Args:
      batch: samples B (the query encoder runs on B rows).
      num_ref: references per set R.
      img_dim: feature dimension h.
      hidden0_sets: reference sets through hidden0 (B per sample; U distinct classes shared).
      attended_sets: reference sets through the layers after hidden0 (B, or U when shared
        without dropout).
    """
    query = (dense_products(batch, img_dim, 256, False) + dense_products(batch, 256, 128) +
             dense_products(batch, 128, 256) + dense_products(batch, 256, img_dim))
    reference = (dense_products(hidden0_sets * num_ref, img_dim, 512, False) +
                 dense_products(attended_sets * num_ref, 512, 256) +
                 dense_products(attended_sets * num_ref, 256, 256) + dense_products(attended_sets, 256, 128))
    return query + reference


def products_flops(products):
    """Σ 2·m·k·n over (m, k, n) products (may be fractional: m from a mean class count)."""
    return sum(2.0 * m * k * n for m, k, n in products)


def make_matmuls(products):
    """A zero-argument function running the float32 tf.matmul products [(m, k, n), ...] of
    integer sizes one after another in one tf.function: the step's dense work alone, each
    product with the whole machine, as tf.matmul runs it."""
    import tensorflow as tf

    operands = [(tf.random.uniform([m, k]), tf.random.uniform([k, n])) for m, k, n in products]

    @tf.function
    def matmuls():
        total = tf.constant(0.0)
        for a, b in operands:
            with tf.control_dependencies([total]):  # one product at a time
                total = total + tf.matmul(a, b)[0, 0]  # one element back: no copy of the product
        return total

    return lambda: float(matmuls())


def mean_distinct_classes(config, tables, batches=100):
    """Mean number of distinct classes in the first `batches` training batches."""
    import numpy as np
    from cleannet import data

    stream = data.training_indices(len(tables.train_features), tables.all_offsets, config.batch_size_sup,
                                   config.batch_size_unsup, config.seed)
    counts = [len(np.unique(np.concatenate([tables.train_class_ids[sup.numpy()],
                                             tables.all_class_ids[unsup.numpy()]])))
              for sup, unsup in stream.take(batches)]
    return float(np.mean(counts))


class BaselineLoop:
    """The original's step: host-side batch assembly with a Python loop, eager update."""

    def __init__(self, config, tables, seed=0):
        import numpy as np
        from cleannet.model import CleanNet
        from cleannet.optimizer import TF1Momentum, staircase_learning_rate

        self.np = np
        self.config = config
        self.tables = tables
        self.rng = np.random.default_rng(seed)
        self.model = CleanNet(config.num_ref, config.img_dim, config.embed_norm, config.dropout_rate,
                              config.weight_decay).build_variables()
        self.step_count = 0
        self.optimizer = TF1Momentum(
            learning_rate=lambda: staircase_learning_rate(self.step_count, config.learning_rate,
                                                          config.lr_update, config.lr_decay),
            momentum=config.momentum)
        self.optimizer.build(self.model.trainable_variables)
        self.order = self.rng.permutation(len(tables.train_features))
        self.position = 0
        offsets = tables.all_offsets
        self.present = np.flatnonzero(np.diff(offsets) > 0)

    def next_batch(self):
        """Host NumPy batch: query [B, h], reference [B, R, h], vlabel [B], vflag [B]."""
        np = self.np
        c, tb = self.config, self.tables
        query, reference, vlabel, vflag = [], [], [], []
        for _ in range(c.batch_size_sup):
            if self.position == len(self.order):
                self.order = self.rng.permutation(len(tb.train_features))
                self.position = 0
            i = self.order[self.position]
            self.position += 1
            query.append(tb.train_features[i])
            reference.append(tb.reference[tb.train_class_ids[i]])
            vlabel.append(tb.train_vlabels[i])
            vflag.append(1.0)
        for _ in range(c.batch_size_unsup):
            cls = self.present[self.rng.integers(len(self.present))]
            i = self.rng.integers(tb.all_offsets[cls], tb.all_offsets[cls + 1])
            query.append(tb.all_features[i])
            reference.append(tb.reference[cls])
            vlabel.append(0.0)
            vflag.append(0.0)
        return (np.array(query, np.float32), np.array(reference, np.float32),
                np.array(vlabel, np.float32), np.array(vflag, np.float32))

    def step(self):
        import tensorflow as tf
        from cleannet.losses import total_loss
        from cleannet.metrics import similarity

        query, reference, vlabel, vflag = self.next_batch()
        with tf.GradientTape() as tape:
            phi_s, v_q, phi_q, v_qr = self.model((query, reference), training=True)
            cos_sim = similarity(phi_s, phi_q)
            loss = tf.reduce_mean(total_loss(vlabel, cos_sim, phi_s, v_q, phi_q, v_qr, vflag,
                                             self.config.neg_weight)) + self.model.regularization_loss()
        variables = self.model.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.step_count += 1
        return float(loss)


def run_benchmark(num_classes, img_dim, num_ref, num_samples, steps, batch_size_sup=32, batch_size_unsup=32,
                  warmup_steps=3, compare_jit=True, work_dir=None, dropout_rate=0.0):
    """Returns dict: ours, per_sample, ours_jit (or None), baseline steps/s and matmul (calls/s);
    ratio, sharing_ratio, jit_ratio; gflops_ours, gflops_per_sample, gflops_matmuls (ours' dense
    products alone as tf.matmul calls, median) and gflops_matmuls_best (fastest call),
    gflops_matmul_best (the per-sample hidden0 product alone), efficiency and efficiency_best
    (gflops_ours over those); distinct_classes (mean U per batch)."""
    import keras
    from cleannet.trainer import load_tables

    results = {}
    batch = batch_size_sup + batch_size_unsup
    with common.temp_dir(work_dir) as tmp:
        num_val = max(16, num_samples // 10)
        common.write_cleannet_tables(tmp, num_samples, num_val, num_samples, num_classes, img_dim, num_ref)
        config = make_config(tmp, num_classes, img_dim, num_ref, batch_size_sup, batch_size_unsup, False,
                             dropout_rate)
        keras.utils.set_random_seed(config.seed)
        tables = load_tables(config)
        ours = make_ours_step(config, tables)
        expected_classes = round(mean_distinct_classes(config, tables))
        attended = batch if dropout_rate > 0 else expected_classes
        steps_fns = {"baseline": BaselineLoop(config, tables).step, "per_sample": make_ours_step(config, tables, False),
                     "ours": ours}
        peak_fns = {"matmuls": make_matmuls(step_products(batch, num_ref, img_dim, expected_classes, attended)),
                    "matmul": make_matmuls([(batch * num_ref, img_dim, 512)])}
        results["ours_jit"] = None
        if compare_jit:
            jit_config = make_config(tmp, num_classes, img_dim, num_ref, batch_size_sup, batch_size_unsup, True,
                                     dropout_rate)
            try:
                jit_step = make_ours_step(jit_config, tables)
                jit_step()  # compile here, so that a failure is reported, not raised
                steps_fns["ours_jit"] = jit_step
            except Exception as err:  # XLA may be missing on some builds
                results["jit_error"] = "%s: %s" % (type(err).__name__, str(err).splitlines()[0][:200])
        # The products alone are timed in the same alternation (median: the steps' load), then
        # on their own (fastest call: the machine's best moment).
        seconds = common.interleaved_median_seconds({**steps_fns, **peak_fns}, steps, warmup=warmup_steps)
        seconds.update({name + "_best": common.best_seconds(fn, steps, warmup=0) for name, fn in peak_fns.items()})
        results.update({name: 1.0 / s for name, s in seconds.items()})
    results["ratio"] = common.ratio(results["ours"], results["baseline"])
    results["sharing_ratio"] = common.ratio(results["ours"], results["per_sample"])
    results["jit_ratio"] = (common.ratio(results["ours_jit"], results["ours"])
                            if results["ours_jit"] is not None else None)
    distinct = sum(ours.distinct_classes) / len(ours.distinct_classes)
    results["distinct_classes"] = distinct
    gflop = lambda u, sets: products_flops(step_products(batch, num_ref, img_dim, u, sets)) / 1e9
    results["gflops_ours"] = gflop(distinct, batch if dropout_rate > 0 else distinct) * results["ours"]
    results["gflops_per_sample"] = gflop(batch, batch) * results["per_sample"]
    results["gflops_matmuls"] = gflop(expected_classes, attended) * results["matmuls"]
    results["gflops_matmuls_best"] = gflop(expected_classes, attended) * results["matmuls_best"]
    results["gflops_matmul_best"] = products_flops([(batch * num_ref, img_dim, 512)]) / 1e9 * results["matmul_best"]
    results["efficiency"] = results["gflops_ours"] / results["gflops_matmuls"]
    results["efficiency_best"] = results["gflops_ours"] / results["gflops_matmuls_best"]
    results["peak_rss_mb"] = common.peak_rss_mb()
    return results


def report(results, sizes, batch, dropout_rate=0.0):
    rows = [("ours (tf.function, jit off)", results["ours"], "steps/s"),
            ("baseline (host NumPy batch, eager)", results["baseline"], "steps/s"),
            ("ratio ours/baseline", results["ratio"], "x"),
            ("ours, per-sample reference encoder", results["per_sample"], "steps/s"),
            ("ratio shared/per-sample encoder", results["sharing_ratio"], "x"),
            ("distinct classes per batch (mean)", results["distinct_classes"], ""),
            ("ours, dense-layer GFLOP/s", results["gflops_ours"], "GFLOP/s"),
            ("per-sample, dense-layer GFLOP/s", results["gflops_per_sample"], "GFLOP/s"),
            ("tf.matmul alone, ours' products in turn, median", results["gflops_matmuls"], "GFLOP/s"),
            ("ours GFLOP/s / those tf.matmuls, median", results["efficiency"], "x"),
            ("same tf.matmuls, fastest call", results["gflops_matmuls_best"], "GFLOP/s"),
            ("ours GFLOP/s / those tf.matmuls, fastest", results["efficiency_best"], "x"),
            ("tf.matmul [%d,%d]x[%d,512] alone, fastest" % (sum(batch) * sizes["num_ref"], sizes["img_dim"],
                                                          sizes["img_dim"]), results["gflops_matmul_best"], "GFLOP/s"),
            ("dropout_rate", float(dropout_rate), "")]
    if results["ours_jit"] is not None:
        rows += [("ours --jit_compile", results["ours_jit"], "steps/s"),
                 ("ratio jit on/off", results["jit_ratio"], "x")]
    elif "jit_error" in results:
        rows.append(("ours --jit_compile", "failed: " + results["jit_error"], ""))
    rows.append(("peak RSS (this process)", results["peak_rss_mb"], "MiB"))
    common.print_table("train steps: %d classes, %d dims, %d refs, %d rows, batch %d+%d"
                       % (sizes["num_classes"], sizes["img_dim"], sizes["num_ref"], sizes["num_samples"],
                          batch[0], batch[1]), rows)


def define_flags():
    flags.DEFINE_enum("preset", "default", list(PRESETS), "Size preset; explicit size flags override it.")
    flags.DEFINE_integer("num_classes", None, "Classes C.")
    flags.DEFINE_integer("img_dim", None, "Feature dimension h.")
    flags.DEFINE_integer("num_ref", None, "References per class R.")
    flags.DEFINE_integer("num_samples", None, "Rows of train.npy and of all.npy.")
    flags.DEFINE_integer("steps", None, "Timed steps per variant.")
    flags.DEFINE_integer("warmup_steps", 3, "Untimed steps first (tracing / compilation).")
    flags.DEFINE_integer("batch_size_sup", 32, "Verified samples per step.")
    flags.DEFINE_integer("batch_size_unsup", 32, "Unverified samples per step (> 0).")
    flags.DEFINE_boolean("compare_jit", True, "Also time --jit_compile (XLA).")
    flags.DEFINE_string("work_dir", None, "Keep the data files here (default: a temporary directory).")
    flags.DEFINE_float("dropout_rate", 0.0, "Dropout on the reference encoder's first layer (train.py's flag).",
                       lower_bound=0.0, upper_bound=0.99)


def main(argv):
    FLAGS = flags.FLAGS
    check_flag(len(argv) == 1, "preset", "unexpected arguments %s" % argv[1:])
    sizes = common.sizes_from_flags(PRESETS, ("num_classes", "img_dim", "num_ref", "num_samples", "steps"))
    check_flag(FLAGS.batch_size_sup > 0, "batch_size_sup", "must be positive")
    check_flag(FLAGS.batch_size_unsup > 0, "batch_size_unsup", "must be positive")
    check_flag(FLAGS.warmup_steps >= 0, "warmup_steps", "must be 0 or more")
    results = run_benchmark(batch_size_sup=FLAGS.batch_size_sup, batch_size_unsup=FLAGS.batch_size_unsup,
                            warmup_steps=FLAGS.warmup_steps, compare_jit=FLAGS.compare_jit,
                            work_dir=FLAGS.work_dir, dropout_rate=FLAGS.dropout_rate, **sizes)
    report(results, sizes, (FLAGS.batch_size_sup, FLAGS.batch_size_unsup), FLAGS.dropout_rate)


if __name__ == "__main__":
    define_flags()
    run_tool(main)
