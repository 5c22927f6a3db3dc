"""The validation views' numbers, computed independently."""

import numpy as np

from cleannet.summaries import per_class_table, pr_curve_data


def test_pr_curve_counts_by_hand():
    labels = np.array([True, True, False, False, True])
    scores = np.array([0.9, 0.4, 0.6, 0.1, 0.5])
    data = pr_curve_data(labels, scores, num_thresholds=3)  # thresholds 0, 0.5, 1
    tp, fp, tn, fn, precision, recall = data
    np.testing.assert_array_equal(tp, [3, 2, 0])   # ≥0.5: 0.9, 0.5 are positives
    np.testing.assert_array_equal(fp, [2, 1, 0])   # ≥0.5: 0.6
    np.testing.assert_array_equal(tn, [0, 1, 2])
    np.testing.assert_array_equal(fn, [0, 1, 3])
    np.testing.assert_allclose(precision[:2], [3 / 5, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(recall[:2], [1.0, 2 / 3], rtol=1e-6)


def test_per_class_table():
    sims = np.array([0.5, 0.0, 0.3, 0.05])
    vlabels = np.array([1, 1, 0, 0])
    class_ids = np.array([0, 0, 2, 2])
    table = per_class_table(sims, vlabels, class_ids, 0.1, ["cat", "dog", "eel"]).splitlines()
    assert table[2] == "| cat | 2 | 0.000 | 0.500 |"   # 0.5 right, 0.0 wrong
    assert table[3] == "| eel | 2 | 1.000 | 0.500 |"   # 0.3 wrong (label wrong), 0.05 right
    assert len(table) == 4
