"""CIFAR-10 with synthetic label noise: read the original batches, prepare docs/originals.md#noisy-label-model-cifar-10-protocol.

The command line of noise_model/data/cifar10.py (the reading, the protocol and the prepared layout).

Command line:
  python -m noise_model.cifar10 --data_dir=DIR --output_dir=DIR [--noise_level=0.5]
      [--num_clean=10000] [--seed=0]
"""

import os

from absl import flags, logging

from noise_model.data.cifar10 import build_noisy_protocol, load_cifar10, log_protocol, write_prepared
from noisylabels.flagutil import define_finite_float, run_tool


def define_flags() -> None:
    flags.DEFINE_string("data_dir", None, "Directory with the CIFAR-10 python or binary "
                        "batches (or their cifar-10-batches-py/-bin folder).", required=True)
    flags.DEFINE_string("output_dir", None, "Where to write the prepared data set.", required=True)
    flags.register_validator("output_dir", bool, message="must not be empty")
    define_finite_float("noise_level", 0.5, "Off-diagonal mass of each column of the noise "
                        "matrix Q, in [0, 1].", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("num_clean", 10000, "How many of the first training images keep "
                         "their true labels.", lower_bound=2)
    flags.DEFINE_integer("seed", 0, "Seed of Q, of the corruption and of the shuffle.", lower_bound=0)


def main(argv: list[str]) -> None:
    del argv
    FLAGS = flags.FLAGS
    train_images, train_labels, test_images, test_labels = load_cifar10(FLAGS.data_dir)
    protocol = build_noisy_protocol(train_images, train_labels, test_images, test_labels,
                                    FLAGS.noise_level, FLAGS.num_clean, FLAGS.seed)
    log_protocol(protocol)
    write_prepared(FLAGS.output_dir, "cifar10", protocol, {
        "source": os.path.abspath(FLAGS.data_dir), "noise_level": FLAGS.noise_level,
        "seed": FLAGS.seed})
    logging.info("Wrote the prepared CIFAR-10 data to %s", FLAGS.output_dir)


def run() -> None:
    """Console entry point (noise-model-prepare-cifar10)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
