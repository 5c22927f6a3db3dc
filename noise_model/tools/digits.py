"""A CIFAR-sized stand-in for CIFAR-10: scikit-learn's digits with the same noisy protocol.

The command line of noise_model/data/digits.py (the split and the protocol).

Command line:
  python -m noise_model.digits --output_dir=DIR [--noise_level=0.5] [--num_clean=N]
      [--num_test=360] [--seed=0]
"""

from absl import flags, logging

from noise_model.data.digits import prepare_digits
from noisylabels.flagutil import define_finite_float, run_tool


def define_flags() -> None:
    flags.DEFINE_string("output_dir", None, "Where to write the prepared data set.", required=True)
    flags.register_validator("output_dir", bool, message="must not be empty")
    define_finite_float("noise_level", 0.5, "Off-diagonal mass of each column of Q, in [0, 1].",
                        lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("num_clean", None, "Training images that keep their true labels "
                         "(default: 20% of the training images, the CIFAR-10 share).", lower_bound=2)
    flags.DEFINE_integer("num_test", 360, "Images in the test set (fewer than the 1797 digits).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Seed of the split, of Q, of the corruption and of the shuffle.",
                         lower_bound=0)


def main(argv: list[str]) -> None:
    del argv
    FLAGS = flags.FLAGS
    prepare_digits(FLAGS.output_dir, noise_level=FLAGS.noise_level, num_test=FLAGS.num_test,
                   seed=FLAGS.seed, num_clean=FLAGS.num_clean)
    logging.info("Wrote the prepared digits data to %s", FLAGS.output_dir)


def run() -> None:
    """Console entry point (noise-model-prepare-digits)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
