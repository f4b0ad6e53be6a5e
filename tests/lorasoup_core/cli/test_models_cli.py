import pytest
from typer.testing import CliRunner

from lorasoup_core.cli import app

runner = CliRunner()


@pytest.mark.slow
def test_models_check_smollm2_prints_paris(smollm2):
    result = runner.invoke(app, ["models", "check", "smollm2-135m", "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert "The capital of France is Paris" in result.output


def test_models_check_unknown_spec_exits_2_with_the_known_specs():
    result = runner.invoke(app, ["models", "check", "nonexistent-model"])
    assert result.exit_code == 2
    assert "tiny-llama" in result.output


def test_every_command_has_help():
    for args in (["--help"], ["models", "--help"], ["models", "check", "--help"], ["store", "--help"],
                 ["store", "ls", "--help"], ["store", "clean", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output, args
