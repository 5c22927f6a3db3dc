"""Writers for inference results: plain similarities, TSV / JSON lines, sample weights.

Formats (one record per scored sample, in input order):
- plain: the cosine similarity alone, as the original wrote it (default, drop-in);
- tsv:   key, url (empty when the input had none), class_name, similarity, verdict
         (1 = label judged correct, cos ≥ threshold), with a header line;
- jsonl: one JSON object per line with the same fields ("url" null when absent).
Sample weights for classifier training (the paper's): key, class_name, soft weight
max(0, cos), hard weight 1[cos ≥ threshold], as TSV with a header line.
"""

import json

import numpy as np

OUTPUT_FORMATS = ("plain", "tsv", "jsonl")


def format_similarity(value):
    """Nine significant digits: a float32 similarity reads back exactly."""
    return "%.9g" % value


def _clean(text):
    return "" if text is None else str(text).replace("\t", " ").replace("\n", " ")


class ResultWriter:
    """Writes scored samples to an open text file in one of OUTPUT_FORMATS."""

    def __init__(self, stream, output_format, threshold):
        if output_format not in OUTPUT_FORMATS:
            raise ValueError("output_format must be one of %s" % "|".join(OUTPUT_FORMATS))
        self.stream = stream
        self.output_format = output_format
        self.threshold = threshold
        if output_format == "tsv":
            stream.write("key\turl\tclass_name\tsimilarity\tverdict\n")

    def write(self, similarities, keys=None, urls=None, class_names=None):
        """Writes one record per similarity; keys/urls/class_names are lists of the same length."""
        similarities = np.asarray(similarities, dtype=np.float32)
        n = len(similarities)
        if self.output_format == "plain":
            self.stream.write("".join(format_similarity(s) + "\n" for s in similarities.tolist()))
            return
        keys = keys if keys is not None else [None] * n
        urls = urls if urls is not None else [None] * n
        class_names = class_names if class_names is not None else [None] * n
        lines = []
        for sim, key, url, name in zip(similarities.tolist(), keys, urls, class_names):
            verdict = int(sim >= self.threshold)
            if self.output_format == "tsv":
                lines.append("%s\t%s\t%s\t%s\t%d\n" % (_clean(key), _clean(url), _clean(name),
                                                     format_similarity(sim), verdict))
            else:
                lines.append(json.dumps({"key": key, "url": url, "class_name": name,
                                         "similarity": float(format_similarity(sim)), "verdict": verdict}) + "\n")
        self.stream.write("".join(lines))


class WeightWriter:
    """Writes the paper's sample weights: soft max(0, cos) and hard 1[cos ≥ threshold]."""

    def __init__(self, stream, threshold):
        self.stream = stream
        self.threshold = threshold
        stream.write("key\tclass_name\tsoft_weight\thard_weight\n")

    def write(self, similarities, keys, class_names):
        lines = []
        for sim, key, name in zip(np.asarray(similarities, np.float32).tolist(), keys, class_names):
            lines.append("%s\t%s\t%s\t%d\n" % (_clean(key), _clean(name), format_similarity(max(0.0, sim)),
                                              int(sim >= self.threshold)))
        self.stream.write("".join(lines))
