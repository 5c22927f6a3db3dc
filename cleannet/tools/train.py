"""Trains CleanNet with the original train.py's flags and defaults.

    python train.py --data_dir=DATA --checkpoint_dir=MODEL/checkpoints/ --log_dir=MODEL/log/ \\
        --val_interval=500 --batch_size_sup=32 --batch_size_unsup=32 --dropout_rate=0.2

DATA holds train.npy, val.npy, ref.npy and (when --batch_size_unsup > 0) all.npy, as
written by util/convert_data.py and util/find_reference.py. TensorBoard logs go to
LOG_DIR/train and LOG_DIR/val. Flags are checked before TensorFlow loads.
"""

from absl import flags, logging

from cleannet.config import DEFAULTS, RECIPES, TrainConfig, check_data_files
from noisylabels.distribution import DISTRIBUTIONS
from noisylabels.flagutil import (define_embed_norm, define_finite_float, define_img_dim, define_log_dir,
                                  define_num_ref, run_tool)


def define_flags() -> None:
    """The original train.py's flags (names, defaults from cleannet.config), then the port's additions."""
    D = DEFAULTS
    flags.DEFINE_string("data_dir", D.data_dir, "Data directory containing {train|val|all|ref}.npy.")
    flags.DEFINE_string("checkpoint_dir", D.checkpoint_dir, "Directory to keep checkpoints.")
    define_log_dir(D.log_dir, "Directory to keep summaries and logs (TensorBoard).")
    flags.DEFINE_integer("log_interval", D.log_interval, "Step interval to print training log.", lower_bound=1)
    flags.DEFINE_integer("val_interval", D.val_interval, "Step interval to run validation and save models.",
                         lower_bound=1)
    define_img_dim(D.img_dim)
    define_num_ref(D.num_ref)
    flags.DEFINE_integer("batch_size_sup", D.batch_size_sup,
                         "Number of samples with human supervision in a training mini-batch.", lower_bound=1)
    flags.DEFINE_integer("batch_size_unsup", D.batch_size_unsup,
                         "Number of samples without human supervision in a training mini-batch "
                         "(0: all.npy is not loaded).", lower_bound=0)
    flags.DEFINE_integer("val_batch_size", D.val_batch_size, "Validation batch size.", lower_bound=1)
    define_finite_float("learning_rate", D.learning_rate, "Initial learning rate.", upper_bound=10.0, above=0.0)
    flags.DEFINE_integer("n_step", D.n_step, "Number of steps to train.", lower_bound=0)
    flags.DEFINE_integer("lr_update", D.lr_update, "Number of steps to update the learning rate.", lower_bound=1)
    define_finite_float("lr_decay", D.lr_decay, "Learning rate decay factor.", upper_bound=1.0, above=0.0)
    define_finite_float("dropout_rate", D.dropout_rate, "Dropout rate, in [0, 1).", lower_bound=0.0)
    flags.register_validator("dropout_rate", lambda value: value < 1.0, message="must be below 1")
    define_finite_float("weight_decay", D.weight_decay, "Weight decay, for regularization.", lower_bound=0.0,
                        upper_bound=1.0)
    define_finite_float("neg_weight", D.neg_weight, "Negative sample weight.", lower_bound=0.0, upper_bound=1e6)
    define_finite_float("val_sim_thres", D.val_sim_thres, "Similarity threshold for validation (a cosine, in [-1, 1]).",
                        lower_bound=-1.0, upper_bound=1.0)
    define_finite_float("momentum", D.momentum, "SGD momentum.", lower_bound=0.0, upper_bound=1.0)
    define_embed_norm(D.embed_norm)
    # Additions of the port.
    flags.DEFINE_integer("seed", D.seed, "Random seed for initialisation, shuffling and sampling.", lower_bound=0)
    flags.DEFINE_bool("allow_pickle", D.allow_pickle,
                      "Allow reading a legacy pickled all.npy (object array). Pickles can run code: "
                      "use only for files you trust.")
    flags.DEFINE_bool("jit_compile", D.jit_compile, "Compile the training step with XLA (--distribution=none only).")
    flags.DEFINE_integer("max_checkpoints", D.max_checkpoints, "How many recent checkpoints to keep.", lower_bound=1)
    flags.DEFINE_string("class_list", D.class_list,
                        "Optional class list (one name per line) for the per-class validation table in TensorBoard.")
    flags.DEFINE_enum("distribution", D.distribution, list(DISTRIBUTIONS),
                      "none: one device; mirrored: tf.distribute.MirroredStrategy over the local GPUs "
                      "(or CPU devices); multi_worker: MultiWorkerMirroredStrategy, cluster from TF_CONFIG. "
                      "Batch sizes stay global (the original per-step meaning).")
    flags.DEFINE_integer("num_cpu_replicas", D.num_cpu_replicas,
                         "With no GPU: split the CPU into this many logical devices and mirror across them "
                         "(to try --distribution=mirrored on a CPU-only machine). 0: leave the CPU as one device.",
                         lower_bound=0)
    flags.DEFINE_bool("mixed_precision", D.mixed_precision,
                      "Compute in float16 with float32 variables and loss (Keras mixed_float16 policy with "
                      "dynamic loss scaling); for GPUs with tensor cores.")
    flags.DEFINE_enum("recipe", D.recipe, list(RECIPES),
                      "paper: the paper's training. robust: also trains verified (and confident unverified) "
                      "samples as negatives for other classes, with --embed_norm=l2norm unless given; for "
                      "inference.py --decision=relative (docs/decisions.md).")
    flags.register_multi_flags_validator(
        ["jit_compile", "distribution"], lambda v: not (v["jit_compile"] and v["distribution"] != "none"),
        message="--jit_compile is supported with --distribution=none only")


FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    config = TrainConfig.from_flags(FLAGS)
    check_data_files(config)
    from noisylabels.console import load_tensorflow

    load_tensorflow()
    from cleannet.trainer import train  # TensorFlow loads after the flags and files are checked

    logging.info("Start training...")
    result = train(config)
    logging.info("Finished at step %d; best val/acc %.6f.", result["step"], result["best_val_acc"])


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
