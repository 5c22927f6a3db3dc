"""Clothing1M: read the original label and key lists, prepare docs/originals.md#noisy-label-model-clothing1m-protocol.

The command line of noise_model/data/clothing1m.py (the checks, the splits and the prepared layout).

Command line:
  python -m noise_model.clothing1m --data_root=DIR --output_dir=DIR [--seed=0]
      [--skip_missing] [--on_bad_image=stop|skip] [--num_workers=N]
"""

from absl import flags, logging

from noise_model.data.clothing1m import prepare_clothing1m
from noise_model.data.clothing1m_format import ON_BAD_IMAGE_CHOICES
from noisylabels.flagutil import run_tool


def define_flags() -> None:
    flags.DEFINE_string("data_root", None, "Clothing1M root: the list files and images/.", required=True)
    flags.DEFINE_string("output_dir", None, "Where to write the prepared lists.", required=True)
    flags.register_validator("output_dir", bool, message="must not be empty")
    flags.DEFINE_integer("seed", 0, "Seed of the clean-set upsampling and the shuffle.", lower_bound=0)
    flags.DEFINE_bool("skip_missing", False, "Skip keys without an image file (default: stop).")
    flags.DEFINE_enum("on_bad_image", "stop", list(ON_BAD_IMAGE_CHOICES), "What to do with an image that "
                      "cannot be decoded: 'stop' (error naming the file) or 'skip' (drop and count).")
    flags.DEFINE_integer("num_workers", 0, "Threads for reading images (0: one per core).", lower_bound=0)


def main(argv: list[str]) -> None:
    del argv
    FLAGS = flags.FLAGS
    prepare_clothing1m(FLAGS.data_root, FLAGS.output_dir, seed=FLAGS.seed,
                       skip_missing=FLAGS.skip_missing, on_bad_image=FLAGS.on_bad_image,
                       num_workers=FLAGS.num_workers)
    logging.info("Wrote the prepared Clothing1M lists to %s", FLAGS.output_dir)


def run() -> None:
    """Console entry point (noise-model-prepare-clothing1m)."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
