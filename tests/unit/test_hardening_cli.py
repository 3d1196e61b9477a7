"""CLI hardening (issue 13): the version from package metadata, and worker counts below one refused."""

from __future__ import annotations

from importlib import metadata

import pytest

from trigate import cli, workers


def test_version_flag_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"trigate {metadata.version('trigate')}\n"


def test_version_command_prints_the_same_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"trigate {metadata.version('trigate')}\n"


@pytest.mark.parametrize("count", ["0", "-2", "two"])
def test_serve_refuses_a_worker_count_below_one(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    # a config path that cannot load: without the check, the command would fail on it instead
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--config", "/nonexistent/trigate.yaml", "--workers", count])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --workers/-w: " in err
    assert ("not a number" if count == "two" else f"must be at least 1, not {count}") in err


def test_workers_module_refuses_zero_workers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        workers.main(["--config", "/nonexistent/trigate.yaml", "--workers", "0"])
    assert exit_.value.code == 2
    assert "must be at least 1, not 0" in capsys.readouterr().err
