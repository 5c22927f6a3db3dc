"""Synthetic label noise, the confusion matrix C and noise types (docs/originals.md#noisy-label-model-matrix-c-noise-types-synthetic-noise).

The command line of noise_model/data/noise.py (writes STEM.npy and STEM.txt, both atomically):

  python -m noise_model.noise --action=make_q --level=0.5 --num_classes=10 --seed=0 --output=q
  python -m noise_model.noise --action=corrupt --labels=clean.txt --matrix_q=q.npy \\
      --seed=1 --output=noisy
  python -m noise_model.noise --action=estimate_c --clean_labels=clean.txt \\
      --noisy_labels=noisy.txt --num_classes=10 --output=c
  python -m noise_model.noise --action=noise_types --clean_labels=clean.txt \\
      --noisy_labels=noisy.txt --matrix_c=c.npy --output=types

Label files are text (one integer per line) or 1-D `.npy`. Text matrices have one row
per line, entries separated by spaces, written with `%.8g`.
"""

from collections.abc import Callable, Sequence

import numpy as np
from absl import flags

from noise_model.data.noise import (compute_matrix_c, corrupt, generate_matrix_q, get_noise_types, read_labels,
                                    read_matrix)
from noisylabels.errors import InputError
from noisylabels.flagutil import define_finite_float, run_tool
from noisylabels.fileio import atomic_open, refuse_output_equal_to_inputs, save_npy

# The flags each --action needs.
ACTION_NEEDS = {
    "make_q": ("level", "num_classes"),
    "corrupt": ("labels", "matrix_q"),
    "estimate_c": ("clean_labels", "noisy_labels", "num_classes"),
    "noise_types": ("clean_labels", "noisy_labels", "matrix_c"),
}
ACTIONS = tuple(ACTION_NEEDS)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the CLI's flags (only when run as a script, so importers get no flags)."""
    flags.DEFINE_enum("action", None, ACTIONS, "What to compute.", required=True)
    define_finite_float("level", None, "make_q: noise level in [0, 1].", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("num_classes", None, "make_q, estimate_c: number of classes L.", lower_bound=2)
    flags.DEFINE_integer("seed", 0, "make_q, corrupt: random seed.", lower_bound=0)
    flags.DEFINE_string("labels", None, "corrupt: clean labels (text, one per line, or .npy).")
    flags.DEFINE_string("clean_labels", None, "estimate_c, noise_types: clean labels.")
    flags.DEFINE_string("noisy_labels", None, "estimate_c, noise_types: noisy labels.")
    flags.DEFINE_string("matrix_q", None, "corrupt: Q as an L×L .npy.")
    flags.DEFINE_string("matrix_c", None, "noise_types: C as an L×L .npy.")
    flags.DEFINE_string("output", None, "Output path stem: writes STEM.npy and STEM.txt "
                        "(a trailing .npy or .txt is dropped).", required=True)
    flags.register_validator("output", lambda value: value is None or value.strip() != "",
                             message="must not be empty")
    for action, needs in ACTION_NEEDS.items():
        flags.register_multi_flags_validator(["action", *needs], _needs_given(action, needs),
                                             message="--action=%s needs %s"
                                             % (action, " and ".join("--" + name for name in needs)))


def _needs_given(action: str, needs: Sequence[str]) -> Callable[[dict], bool]:
    """A multi-flag validator: with --action=`action`, every flag named in `needs` is given."""
    return lambda values: values["action"] != action or all(values[name] is not None for name in needs)


def output_stem(output: str) -> str:
    for suffix in (".npy", ".txt"):
        if output.endswith(suffix):
            return output[:-len(suffix)]
    return output


def write_result(stem: str, array: np.ndarray) -> None:
    """Writes `array` to STEM.npy and STEM.txt (rows of `%.8g`, or one integer per line)."""
    save_npy(stem + ".npy", array)
    with atomic_open(stem + ".txt", "w") as f:
        if array.ndim == 1:
            for value in array:
                f.write("%d\n" % value)
        else:
            for row in array:
                f.write(" ".join("%.8g" % value for value in row) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise InputError("unexpected arguments: %s" % " ".join(argv[1:]))
    if FLAGS.action == "make_q":
        result = generate_matrix_q(FLAGS.level, FLAGS.num_classes, FLAGS.seed)
    elif FLAGS.action == "corrupt":
        matrix_q = read_matrix(FLAGS.matrix_q, "matrix_q")
        result = corrupt(read_labels(FLAGS.labels, "labels"), matrix_q, FLAGS.seed)
    elif FLAGS.action == "estimate_c":
        result = compute_matrix_c(read_labels(FLAGS.clean_labels, "clean_labels"),
                                  read_labels(FLAGS.noisy_labels, "noisy_labels"),
                                  FLAGS.num_classes)
    else:  # noise_types
        result = get_noise_types(read_labels(FLAGS.clean_labels, "clean_labels"),
                                 read_labels(FLAGS.noisy_labels, "noisy_labels"),
                                 read_matrix(FLAGS.matrix_c, "matrix_c"))
    stem = output_stem(FLAGS.output)
    inputs = [("--" + name, getattr(FLAGS, name))
              for name in ("labels", "matrix_q", "clean_labels", "noisy_labels", "matrix_c")]
    for path in (stem + ".npy", stem + ".txt"):
        refuse_output_equal_to_inputs({"output": path}, inputs)
    write_result(stem, result)
    print("wrote %s.npy and %s.txt" % (stem, stem))
    return 0


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
