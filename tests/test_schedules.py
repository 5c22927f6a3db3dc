"""The one step-decay schedule: TF1's float32 arithmetic and Caffe's double, checked by hand."""

import numpy as np
import pytest

from cleannet.optimizer import staircase_learning_rate
from noise_model.training.solver import CaffeStepSchedule
from noisylabels.schedules import StepDecay


@pytest.mark.parametrize("step, drops", [(0, 0), (2999, 0), (3000, 1), (6001, 2), (9000, 3)])
def test_float32_is_tf1_exponential_decay(step, drops):
    expected = np.float32(0.01) * np.float32(0.1) ** np.float32(drops)  # float32 throughout, as TF1
    got = float(StepDecay(0.01, 0.1, 3000, "float32")(step))
    assert np.float32(got) == expected
    assert float(staircase_learning_rate(step, 0.01, 3000, 0.1)) == got


@pytest.mark.parametrize("step, drops", [(0, 0), (3999, 0), (4000, 1), (12000, 3)])
def test_float64_is_caffe_step_policy(step, drops):
    expected = np.float32(0.001 * 0.1 ** drops)  # double, then read as float
    assert np.float32(float(CaffeStepSchedule(0.001, 0.1, 4000)(step))) == expected
    assert float(CaffeStepSchedule(0.001)(123456)) == pytest.approx(0.001)  # "fixed" policy


def test_the_two_arithmetics_differ_where_the_originals_do():
    single = np.float32(float(StepDecay(0.003, 0.3, 1, "float32")(5)))
    double = np.float32(float(StepDecay(0.003, 0.3, 1, "float64")(5)))
    assert single == np.float32(0.003) * np.float32(0.3) ** np.float32(5)
    assert double == np.float32(0.003 * 0.3 ** 5)
    assert single != double


@pytest.mark.parametrize("base, stepsize", [(0.0, 10), (-1.0, 10), (0.1, 0)])
def test_bad_arguments_are_refused(base, stepsize):
    with pytest.raises(ValueError):
        StepDecay(base, 0.1, stepsize)
