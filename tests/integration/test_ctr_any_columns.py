"""CTR logs of any column mix by config alone: all-categorical and all-numeric logs train, gate, publish and
evaluate; a config naming no feature column is one error line naming the keys.

The all-categorical log is the Criteo sample's categorical fields that are never empty (14 of 26): a log
without missing values, like most all-categorical click logs. A candidate sent with no features, or only unseen
values, must be served near the training base rate (the missing ids are never seen in such a log's rows).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from app.repository import list_versions, load_verified
from compress.cli import main
from compress.config import parse_config
from compress.data import labels, read_table, split_rows
from compress.errors import ConfigError
from tests.fixtures.compress_run import CTR_CONFIG
from tests.fixtures.servers import ServerFactory, wait_until

NEVER_EMPTY = ["C1", "C2", "C5", "C7", "C8", "C9", "C10", "C11", "C13", "C14", "C15", "C17", "C18", "C23"]


def _config(tmp_path: Path, **data: Any) -> Path:
    """The shipped CTR config cut down to seconds: 2,000 rows, 3 epochs, two candidates plus emb_int8."""
    raw = tomllib.loads(CTR_CONFIG.read_text())
    raw["data"].update(max_rows=2000, **data)
    raw["train"].update(epochs=3, hidden=[256, 64], lr=0.003, dropout=0.1)
    raw["candidates"] = ["fp32", "int8_dynamic_u8", "emb_int8"]
    raw["select"].update(min_compression=1.0, batch_size=64)
    raw["latency"].update(batch_sizes=[1, 64], repeats=5)
    raw["gate"]["rules"] = [{"metric": "auc", "kind": "min_ratio", "value": 0.99}]
    path = tmp_path / "ctr.toml"
    path.write_text(_toml(raw))
    return path


def _toml(raw: dict[str, Any]) -> str:
    """A minimal TOML writer for the config's shapes (scalars, lists, inline tables, one level of tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    top = [f"{k} = {value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    tables = [
        f"[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
        for k, v in raw.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


@pytest.mark.parametrize(("kind", "keep"), [("all-categorical", "categorical"), ("all-numeric", "dense")])
def test_a_log_with_one_kind_of_column_is_published_and_reproduced(
    kind: str,
    keep: str,
    tmp_path: Path,
    ctr_config: Any,
    capsys: pytest.CaptureFixture[str],
    start_server: ServerFactory,
) -> None:
    empty = "dense" if keep == "categorical" else "categorical"
    config = _config(tmp_path, **{empty: []}, **({"categorical": NEVER_EMPTY} if keep == "categorical" else {}))
    repo = tmp_path / "repo"
    assert main(["-q", "run", str(config), "--repo", str(repo)]) == 0, capsys.readouterr().err
    versions = list_versions(repo, "ad-ctr")
    assert versions == [1, 2]
    _, manifest = load_verified(repo, "ad-ctr", 2)
    assert [t.name for t in manifest.inputs] == ["sparse" if keep == "categorical" else "dense"]
    width = len(NEVER_EMPTY) if keep == "categorical" else len(ctr_config.data.dense)
    assert manifest.inputs[0].shape == [-1, width]
    assert manifest.metrics["candidate"]["auc"] > 0.55  # the features carry signal, whichever kind is left
    report = capsys.readouterr().out
    if keep == "dense":  # no embedding to compress: the candidate is reported as an error, the run goes on
        assert "emb_int8 needs categorical columns" in report
    assert main(["evaluate", str(repo / "ad-ctr" / "2")]) == 0
    assert "reproduced" in capsys.readouterr().out
    if keep == "categorical":
        _empty_rows_are_served_near_the_base_rate(config, repo, start_server)


def training_base_rate(config: Path) -> float:
    """Share of clicks in the training rows of ``config``'s split (what an uninformed model should predict)."""
    cfg = parse_config(tomllib.loads(config.read_text()))
    y = labels(read_table(cfg.data), cfg.data)
    return float(y[split_rows(len(y), cfg.split).train].mean())


def _empty_rows_are_served_near_the_base_rate(config: Path, repo: Path, start_server: ServerFactory) -> None:
    base = training_base_rate(config)
    server = start_server(repo)
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 120, "the all-categorical model")
    unseen = {c: f"never-seen-{c}" for c in NEVER_EMPTY}
    body = {"candidates": [{"ad_id": "empty", "features": {}}, {"ad_id": "unseen", "features": unseen}]}
    r = server.post("/v1/ads/ctr", json=body)
    assert r.status_code == 200, server.saw(r)
    scores = {s["ad_id"]: s["pctr"] for s in r.json()["scores"]}
    for name, p in scores.items():
        assert base / 1.5 <= p <= base * 1.5, f"{name} candidate scored {p:.4f}; training base rate {base:.4f}"


def test_no_feature_columns_is_one_line_naming_the_keys() -> None:
    raw = tomllib.loads(CTR_CONFIG.read_text())
    raw["data"].update(dense=[], categorical=[])
    with pytest.raises(ConfigError, match=r"data\.dense and data\.categorical are both empty") as e:
        parse_config(raw)
    assert "\n" not in str(e.value)
    raw["data"].update(dense=["I1"], categorical=["I1"])
    with pytest.raises(ConfigError, match=r"columns \['I1'\] are listed more than once"):
        parse_config(raw)
