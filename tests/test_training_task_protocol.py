"""The training-task contract (noisylabels.training_loop.TrainingTask): written once, what the loop calls, and
implemented in full by both tasks."""

import ast
import inspect

import pytest

from noisylabels import training_loop
from noisylabels.training_loop import TrainingTask

MEMBERS = sorted(name for name in vars(TrainingTask) if not name.startswith("_"))


def test_the_protocol_names_what_the_loop_calls_on_a_task():
    """Every `task.X` / `self.task.X` in training_loop.py is a member of the protocol, and every member is used."""
    tree = ast.parse(inspect.getsource(training_loop))
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            target = node.value
            if isinstance(target, ast.Name) and target.id == "task":
                called.add(node.attr)
            elif isinstance(target, ast.Attribute) and target.attr == "task":
                called.add(node.attr)
    assert sorted(called) == MEMBERS
    assert "hasattr" not in inspect.getsource(training_loop.TrainingLoop)


def _task_classes():
    from cleannet.trainer import Trainer
    from noise_model.training.stage_task import StageTask

    return [Trainer, StageTask]


@pytest.mark.parametrize("index", [0, 1], ids=["cleannet.Trainer", "noise_model.StageTask"])
def test_each_task_defines_every_member_with_the_protocols_parameters(index):
    task_class = _task_classes()[index]
    assert TrainingTask in task_class.__mro__  # declared, not only matching
    for name in MEMBERS:
        assert name in vars(task_class), "%s does not define %s (it would inherit the protocol's stub)" % (
            task_class.__name__, name)
        mine, contract = vars(task_class)[name], vars(TrainingTask)[name]
        if isinstance(contract, property):
            assert isinstance(mine, property), name
            continue
        assert list(inspect.signature(mine).parameters) == list(inspect.signature(contract).parameters), name
