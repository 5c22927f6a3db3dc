"""Trains CleanNet (SPEC.md 1.4) with the original train.py's flags and defaults.

    python train.py --data_dir=DATA --checkpoint_dir=MODEL/checkpoints/ --log_dir=MODEL/log/ \
        --val_interval=500 --batch_size_sup=32 --batch_size_unsup=32 --dropout_rate=0.2

DATA holds train.npy, val.npy, ref.npy and (when --batch_size_unsup > 0) all.npy, as
written by util/convert_data.py and util/find_reference.py. TensorBoard logs go to
LOG_DIR/train and LOG_DIR/val.
"""

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging

from util.errors import cli_main
from util.flagutil import define_log_dir
from util.process_exit import skip_teardown_on_success

flags.DEFINE_string("data_dir", "./data/", "Data directory containing {train|val|all|ref}.npy.")
flags.DEFINE_string("checkpoint_dir", "./train/checkpoints/", "Directory to keep checkpoints.")
define_log_dir("./train/log/", "Directory to keep summaries and logs (TensorBoard).")
flags.DEFINE_integer("log_interval", 100, "Step interval to print training log.")
flags.DEFINE_integer("val_interval", 2000, "Step interval to run validation and save models.")
flags.DEFINE_integer("img_dim", 2048, "Dimensionality of the image embedding")
flags.DEFINE_integer("num_ref", 32, "Number of reference image embeddings for a class")
flags.DEFINE_integer("batch_size_sup", 32, "Number of samples with human supervision in a training mini-batch.")
flags.DEFINE_integer("batch_size_unsup", 32,
                     "Number of samples without human supervision in a training mini-batch "
                     "(0: all.npy is not loaded).")
flags.DEFINE_integer("val_batch_size", 64, "Validation batch size.")
flags.DEFINE_float("learning_rate", 0.01, "Initial learning rate.")
flags.DEFINE_integer("n_step", 60000, "Number of steps to train.")
flags.DEFINE_integer("lr_update", 30000, "Number of steps to update the learning rate.")
flags.DEFINE_float("lr_decay", 0.1, "Learning rate decay factor.")
flags.DEFINE_float("dropout_rate", 0.0, "Dropout rate.")
flags.DEFINE_float("weight_decay", 0.0001, "Weight decay, for regularization.")
flags.DEFINE_float("neg_weight", 5.0, "Negative sample weight.")
flags.DEFINE_float("val_sim_thres", 0.1, "Similarity threshold for validation.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_string("embed_norm", "log", "log|l2norm|no_norm (l2_norm is accepted as l2norm).")
# Additions of the port.
flags.DEFINE_integer("seed", 123, "Random seed for initialisation, shuffling and sampling.")
flags.DEFINE_bool("allow_pickle", False,
                  "Allow reading a legacy pickled all.npy (object array). Pickles can run code: "
                  "use only for files you trust.")
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
flags.DEFINE_integer("max_checkpoints", 5, "How many recent checkpoints to keep.")
flags.DEFINE_string("class_list", None,
                    "Optional class list (one name per line) for the per-class validation table in TensorBoard.")
flags.DEFINE_enum("distribution", "none", ["none", "mirrored", "multi_worker"],
                  "none: one device; mirrored: tf.distribute.MirroredStrategy over the local GPUs "
                  "(or CPU devices); multi_worker: MultiWorkerMirroredStrategy, cluster from TF_CONFIG. "
                  "Batch sizes stay global (the original per-step meaning).")
flags.DEFINE_integer("num_cpu_replicas", 0,
                     "With no GPU: split the CPU into this many logical devices and mirror across them "
                     "(to try --distribution=mirrored on a CPU-only machine). 0: leave the CPU as one device.")
flags.DEFINE_bool("mixed_precision", False,
                  "Compute in float16 with float32 variables and loss (Keras mixed_float16 policy with "
                  "dynamic loss scaling); for GPUs with tensor cores.")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    from cleannet.trainer import TrainConfig, train  # TensorFlow loads after flag parsing

    config = TrainConfig(**{field: FLAGS[field].value for field in TrainConfig.__dataclass_fields__})
    logging.info("Start training...")
    result = train(config)
    logging.info("Finished at step %d; best val/acc %.6f.", result["step"], result["best_val_acc"])


def run():
    """Console entry point."""
    app.run(skip_teardown_on_success(cli_main(main)))


if __name__ == "__main__":
    run()
