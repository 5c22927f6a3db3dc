"""Synthetic inference.py output (tsv, relative decision), class lists and images for the review tests."""

import os

import cv2
import numpy as np

HEADER = "key\turl\tclass_name\tsimilarity\tverdict\tbest_other_class\tbest_other_similarity\tmargin\tsuggested_class\n"


def class_names(count):
    return ["class_%03d" % c for c in range(count)]


def write_predictions(path, samples, classes, seed=0, min_margin=0.0, urls=None, noise=0.3):
    """Writes a tsv like inference.py --decision=relative's; returns (keys, labels, similarity, margin, verdict).

    A `noise` share of the samples gets a low margin (label wrong, suggested = the best other class)."""
    rng = np.random.default_rng(seed)
    names = class_names(classes)
    labels = rng.integers(0, classes, samples)
    wrong = rng.random(samples) < noise
    similarity = np.where(wrong, rng.uniform(-0.2, 0.4, samples), rng.uniform(0.2, 0.9, samples))
    margin = np.where(wrong, rng.uniform(-0.5, 0.05, samples), rng.uniform(-0.05, 0.6, samples))
    other = (labels + rng.integers(1, classes, samples)) % classes
    verdict = (margin >= min_margin).astype(int)
    keys = ["k%06d" % i for i in range(samples)]
    with open(path, "w") as f:
        f.write(HEADER)
        for i in range(samples):
            suggested = names[other[i]] if verdict[i] == 0 and margin[i] < 0 else ""
            f.write("%s\t%s\t%s\t%.6f\t%d\t%s\t%.6f\t%.6f\t%s\n" % (
                keys[i], urls[i] if urls else "", names[labels[i]], similarity[i], verdict[i], names[other[i]],
                similarity[i] - margin[i], margin[i], suggested))
    return keys, labels, similarity, margin, verdict


def write_class_list(path, classes):
    with open(path, "w") as f:
        f.write("".join(name + "\n" for name in class_names(classes)))
    return str(path)


def write_images(root, keys, labels, size=40):
    """One small PNG per key under root/<class>/<key>.png; returns the image list rows (key, path, class)."""
    rows = []
    for key, label in zip(keys, labels):
        name = class_names(label + 1)[label]
        relative = os.path.join(name, key + ".png")
        os.makedirs(os.path.join(root, name), exist_ok=True)
        image = np.full((size, size, 3), (label * 37) % 256, np.uint8)
        cv2.putText(image, str(label % 10), (8, size - 8), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        cv2.imwrite(os.path.join(root, relative), image)
        rows.append((key, relative, name))
    return rows


def write_image_list(path, rows):
    with open(path, "w") as f:
        f.write("".join("\t".join(row) + "\n" for row in rows))
    return str(path)
