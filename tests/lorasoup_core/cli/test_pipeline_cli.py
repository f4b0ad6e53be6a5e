"""`lorasoup pool list`, `lorasoup compose` and `lorasoup eval` on tiny-llama against the session's registry."""

from typer.testing import CliRunner

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.cli import app
from lorasoup_core.registry import AdapterRegistry

runner = CliRunner()


def _register(tiny_pool) -> AdapterRegistry:
    reg = AdapterRegistry()
    for skill in ("add", "count_items", "first_item"):
        reg.register(AdapterCard.read(tiny_pool[skill]), tiny_pool[skill])
    return reg


def test_compose_list_and_eval(tiny_pool, shared_data):
    _register(tiny_pool)
    out = runner.invoke(app, ["compose", "--model", "tiny-llama", "--target", "skills:count_items", "--method",
                              "lorahub", "--filter", "embedding", "-k", "2", "--set", "budget=6"])
    assert out.exit_code == 0, out.output
    assert "registered lorasoup.tiny-llama.count_items-lorahub/1" in out.output and "count_items=" in out.output

    listed = runner.invoke(app, ["pool", "list", "--base", "tiny-llama"])
    assert listed.exit_code == 0 and "count_items-lorahub" in listed.output and "lorasoup.tiny-llama.add" in listed.output

    ev = runner.invoke(app, ["eval", "--benchmark", "skills", "--tasks", "count_then_add", "--model", "tiny-llama",
                             "--limit", "3", "--adapter", "lorasoup.tiny-llama.count_items-lorahub@latest",
                             "--device", "cpu", "--dtype", "float32"])
    assert ev.exit_code == 0, ev.output
    assert "count_then_add" in ev.output and "macro average" in ev.output and "examples/s" in ev.output and "prompt tokens/example" in ev.output
    bad = runner.invoke(app, ["eval", "--benchmark", "nope", "--model", "tiny-llama"])
    assert bad.exit_code == 2 and "unknown benchmark 'nope'" in bad.output



def test_compose_exports_at_a_capped_rank(tiny_pool, tmp_path):
    import json

    from lorasoup_core.storage import fetch

    _register(tiny_pool)
    out = runner.invoke(app, ["compose", "--model", "tiny-llama", "--target", "skills:count_then_add", "--method",
                              "uniform", "--filter", "embedding", "-k", "3", "--export-rank", "4"])
    assert out.exit_code == 0, out.output
    uri = out.output.strip().splitlines()[-1].split(" at ")[1]
    local = fetch(uri, tmp_path / "capped")
    assert json.loads((local / "adapter_config.json").read_text())["r"] == 4
    card = AdapterCard.read(local)
    assert 0 < card.metrics["export_truncation_error"] < 1  # three rank-8 adapters: 24 -> 4 loses something
    bad = runner.invoke(app, ["compose", "--model", "tiny-llama", "--target", "skills:count_then_add", "--base-ref",
                              "somewhere"])
    assert bad.exit_code == 2 and "'somewhere' is not one of" in bad.output


def test_model_loading_commands_share_device_and_dtype_options():
    """One --device and one --dtype with one meaning on every command that loads the base model; a bad
    value is a usage error naming it, before anything loads."""
    commands = (["eval", "--benchmark", "skills", "--model", "tiny-llama"],
                ["compose", "--target", "skills:count_items", "--model", "tiny-llama"],
                ["models", "check", "tiny-llama"],
                ["pool", "import", "/nonexistent", "--model", "tiny-llama"])
    for command in commands:
        device = runner.invoke(app, [*command, "--device", "gpu0"])
        assert device.exit_code == 2 and "device 'gpu0': expected auto, cpu, cuda" in device.output, (command, device.output)
        dtype = runner.invoke(app, [*command, "--dtype", "fp8"])
        assert dtype.exit_code == 2 and "unknown dtype 'fp8'; known: auto" in dtype.output, (command, dtype.output)
