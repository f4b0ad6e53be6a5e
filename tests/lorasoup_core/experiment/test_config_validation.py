"""Config mistakes fail at load time, one line naming the bad value and the known ones, not after the pool
is trained: unknown targets, optimizers and devices, empty targets, an oracle filter on a plain target,
and (for runs whose steps run here) task data this machine cannot load."""

import pytest

from lorasoup_core.config import ConfigError
from lorasoup_core.experiment import load_experiment

DEMO = "configs/demo.yaml"


@pytest.mark.parametrize(("overrides", "message"), [
    (["targets=[{task: skills:count_then_addd}]"], r"targets\.0\.task: .*unknown skills task 'count_then_addd'; "
                                                   r"known: add, .*count_then_add"),
    (["targets=[{task: nosource:x}]"], r"targets\.0\.task: .*unknown data source 'nosource'; known: bbh, "),
    (["targets=[{task: count_then_add}]"], r"task 'count_then_add': expected 'source:name'"),
    (["targets=[]"], r"targets: .*no targets: name at least one target task"),
    (["pool.tasks=[skills:add, skills:nope]"], r"pool: .*tasks\.1: unknown skills task 'nope'; known: add"),
    (["compose.lorahub.optimizer=CMAA"], r"unknown nevergrad optimizer 'CMAA'; did you mean .*CMA.*e\.g\. NGOpt"),
    (["variants={v: {method: lorahub, settings: {optimizer: Nope}}}", "methods=[v]"],
     r"variants\.v: .*unknown nevergrad optimizer 'Nope'"),
    (["model.device=gpu"], r"model: .*device 'gpu': expected auto, cpu, cuda, cuda:N \(e\.g\. cuda:1\) or mps"),
    (["model.device=cuda:one"], r"device 'cuda:one'"),
    (["model.dtype=fp33"], r"unknown dtype 'fp33'; known: auto, bf16"),
    (["selection.filters=[oracle]", "targets=[{task: skills:add}]"],
     r"the oracle filter needs composed targets; add is built from no pool task \(composed skills: "),
    # already refused before this change; kept here so they stay refused
    (["selection.filters=[embeding]"], r"unknown candidate filter 'embeding'; known: arrow, compatible, embedding"),
    (["pool.overrides={ad: {steps: 3}}"], r"overrides name task\(s\) not in the pool: ad; pool: add"),
])
def test_mistakes_fail_at_load_naming_the_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(DEMO, overrides)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps"])
def test_portable_devices_are_accepted_without_the_hardware(device):
    """A config names a device for the machine that runs it: cuda is accepted on a CPU-only machine."""
    assert load_experiment(DEMO, [f"model.device={device}"]).model.device == device


def test_bbh_target_names_are_checked_against_the_data(shared_data, monkeypatch):
    monkeypatch.setenv("LORASOUP_DATA_DIR", str(shared_data))
    assert load_experiment(DEMO, ["targets=[{task: bbh:navigate}]"]).targets[0].name == "navigate"
    with pytest.raises(ConfigError, match=r"unknown bbh task 'navigatee'; known: boolean_expressions, .*navigate"):
        load_experiment(DEMO, ["targets=[{task: bbh:navigatee}]"])


def test_data_missing_here_is_left_to_the_machine_that_runs_the_step(monkeypatch, tmp_path):
    """Without BBH data on this machine the config still loads (a GPU worker may hold it); `check_task_data`,
    which `lorasoup run` calls when the steps run here, refuses it."""
    from lorasoup_core.experiment.checks import check_task_data

    monkeypatch.setenv("LORASOUP_DATA_DIR", str(tmp_path))
    cfg = load_experiment(DEMO, ["targets=[{task: bbh:navigate}, {task: skills:count_then_add}]"])
    with pytest.raises(ConfigError, match=r"targets\.0\.task: .*bbh.*not found") as err:
        check_task_data(cfg)
    assert "targets.1" not in str(err.value) and "pool.tasks" not in str(err.value)
    monkeypatch.delenv("LORASOUP_DATA_DIR")
    with pytest.raises(ConfigError, match=r"targets\.0\.task: no path given for 'bbh' data and LORASOUP_DATA_DIR"):
        check_task_data(cfg, pool=False)
    check_task_data(load_experiment(DEMO))  # skills need no files


def test_hub_datasets_are_not_looked_up_while_validating(monkeypatch):
    from lorasoup_core.experiment.checks import check_task_data

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_experiment(DEMO, ["targets=[{task: {source: bbh, name: navigate, path: lukaemon/bbh}}]"])
    check_task_data(cfg)  # offline: the hub is asked only when the step loads it
