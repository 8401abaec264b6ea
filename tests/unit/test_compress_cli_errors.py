"""Bad input to ``python -m compress``: one clear error line, non-zero exit, nothing published."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.cli import main
from compress.config import PROJECT_ROOT

CONFIG = (PROJECT_ROOT / "compress" / "configs" / "ad_ctr.toml").read_text()


def run_cli(tmp_path: Path, config_text: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(config_text)
    code = main(["-q", "run", str(cfg), "--repo", str(tmp_path / "repo"), *extra])  # -q: no stage lines
    err = capsys.readouterr().err.strip()
    assert not (tmp_path / "repo" / "ad-ctr").exists() or not any((tmp_path / "repo" / "ad-ctr").iterdir())
    return code, err


def test_missing_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(tmp_path, CONFIG, capsys, "--data", str(tmp_path / "nope.tsv"))
    assert code == 2 and err.count("\n") == 0
    assert err.startswith("error: data file") and "does not exist" in err and "[data].path" in err


def test_wrong_column_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("0\t1\t2\n" * 10)
    code, err = run_cli(tmp_path, CONFIG, capsys, "--data", str(bad))
    assert code == 2 and "line 1: 3 columns, expected 40" in err


def test_malformed_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text(("x" + "\t1" * 13 + "\ta" * 26 + "\n") * 5)
    code, err = run_cli(tmp_path, CONFIG, capsys, "--data", str(bad))
    assert code == 2 and "label column 'label' row 1: 'x' is not 0 or 1" in err


def test_unknown_config_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(tmp_path, CONFIG.replace("[train]\n", "[train]\nepochz = 3\n"), capsys)
    assert code == 2 and "train.epochz: unknown key" in err


def test_invalid_toml_and_unknown_candidate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(tmp_path, CONFIG + "\n[broken", capsys)
    assert code == 2 and "not valid TOML" in err
    code, err = run_cli(tmp_path, CONFIG.replace('"fp32", "int8_dynamic_u8"', '"fp32", "int4_magic"'), capsys)
    assert code == 2 and "int4_magic" in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "none.toml"), "--repo", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
