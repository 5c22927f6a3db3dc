"""Import a Caffe `.caffemodel` into our Keras models, without Caffe installed.

The command line of noise_model/model/caffe_import.py (the reading, the layouts and the copy).

Command line:
  python -m noise_model.import_caffemodel --caffemodel=bvlc_reference_caffenet.caffemodel \\
      --model=caffenet --output=caffenet.weights.h5 [--num_outputs=N] [--keep_bgr]
      [--exclude_layers=fc8]
writes the built Keras model's weights (`model.save_weights`, atomically); load them with
`model.load_weights(path, skip_mismatch=True)` into a model of the same class.
"""

from absl import flags, logging

from noise_model.model.caffe_import import (MODEL_CHOICES, WEIGHTS_SUFFIX, build_model, import_into, infer_num_outputs,
                                           load_caffemodel, save_weights)
from noisylabels.errors import InputError, check_flag
from noisylabels.fileio import refuse_output_equal_to_inputs
from noisylabels.flagutil import run_tool


def define_flags() -> None:
    flags.DEFINE_string("caffemodel", None, "The .caffemodel file.", required=True)
    flags.DEFINE_enum("model", None, list(MODEL_CHOICES), "Target model: caffenet, caffenet_ntype or cifar_quick.",
                      required=True)
    flags.DEFINE_integer("num_outputs", None, "Outputs of the last layer (caffenet, "
                         "cifar_quick); default: that of the caffemodel's fc8 / ip2.", lower_bound=1)
    flags.DEFINE_string("output", None, "Keras weights file to write (must end in %s)." % WEIGHTS_SUFFIX,
                        required=True)
    flags.register_validator("output", lambda value: value is None or value.endswith(WEIGHTS_SUFFIX),
                             message="must be a path ending in %s" % WEIGHTS_SUFFIX)
    flags.DEFINE_bool("keep_bgr", False, "Keep CaffeNet's conv1 in Caffe's BGR input order "
                      "(default: reverse it so the model takes RGB).")
    flags.DEFINE_list("exclude_layers", [], "Layer names not to copy (e.g. fc8).")


def main(argv: list[str]) -> None:
    del argv
    FLAGS = flags.FLAGS
    refuse_output_equal_to_inputs({"output": FLAGS.output}, [("--caffemodel", FLAGS.caffemodel)])
    blobs = load_caffemodel(FLAGS.caffemodel)
    num_outputs = FLAGS.num_outputs
    if num_outputs is None and FLAGS.model != "caffenet_ntype":
        num_outputs = infer_num_outputs(FLAGS.model, blobs)
        check_flag(num_outputs is not None, "num_outputs",
                   "is required: the caffemodel has no layer to infer it from")
    from noisylabels.console import load_tensorflow

    load_tensorflow()  # after the flags and the caffemodel are checked
    model = build_model(FLAGS.model, num_outputs)
    try:
        copied = import_into(model, blobs, keep_bgr=FLAGS.keep_bgr, exclude=FLAGS.exclude_layers)
    except InputError as err:
        raise InputError(err.message + " (pass --exclude_layers=NAME to keep a layer's initial "
                         "weights)", path=FLAGS.caffemodel, field=err.field) from None
    check_flag(bool(copied), "model", "no layer of the caffemodel matches a layer of %s by name"
               % FLAGS.model)
    save_weights(model, FLAGS.output)
    logging.info("Wrote %s (%d layers imported)", FLAGS.output, len(copied))


def run() -> None:
    """Console entry point."""
    define_flags()
    run_tool(main)


if __name__ == "__main__":
    run()
