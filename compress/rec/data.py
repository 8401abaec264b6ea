"""Interaction log -> cleaned baskets -> temporal split -> model examples (history, targets).

Any log works by ``[data]`` alone: columns are mapped by name, optional ones may be absent. Item index 0 is
padding; real items are 1..N in first-seen order of the training log (deterministic).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compress.errors import DataError
from compress.rec.config import RecDataSection, RecSplitSection

PAD = 0


def read_log(d: RecDataSection) -> tuple[pd.DataFrame, dict[str, int]]:
    """The log as columns user, item, ts, basket[, text]; returns it with the counts of what was dropped."""
    path = d.resolved_path()
    if not path.is_file():
        raise DataError(f"interaction log {path} not found (set DATA_DIR or [data].path)")
    cols = [c for c in (d.user, d.item, d.timestamp, d.basket, d.quantity, d.price, d.text) if c]
    try:
        if d.format == "parquet":
            raw = pd.read_parquet(path, columns=cols)
        else:
            raw = pd.read_csv(path, sep="\t" if d.format == "tsv" else ",", usecols=cols, dtype={d.item: str})
    except (ValueError, KeyError) as e:
        raise DataError(f"{path}: cannot read columns {cols}: {e}") from None
    dropped: dict[str, int] = {"rows_read": len(raw)}
    keep = raw[d.user].notna() & raw[d.item].notna()
    dropped["no_user_or_item"] = int((~keep).sum())
    if d.quantity:
        bad = keep & ~(raw[d.quantity] > 0)
        dropped["quantity_le_0"] = int(bad.sum())
        keep &= ~bad
    if d.price:
        bad = keep & ~(raw[d.price] > 0)
        dropped["price_le_0"] = int(bad.sum())
        keep &= ~bad
    if d.basket and d.drop_basket_prefixes:
        bad = keep & raw[d.basket].astype(str).str.startswith(tuple(d.drop_basket_prefixes))
        dropped["cancelled_basket"] = int(bad.sum())
        keep &= ~bad
    items = raw[d.item].astype(str).str.strip()
    if d.item_pattern:
        bad = keep & ~items.str.fullmatch(d.item_pattern)
        dropped["non_product_item"] = int(bad.sum())
        dropped_codes = sorted(set(items[bad]))
        keep &= ~bad
    else:
        dropped_codes = []
    df = raw[keep]
    user = df[d.user]
    user = user.astype("int64").astype(str) if pd.api.types.is_float_dtype(user) else user.astype(str)
    if d.timestamp_unit == "datetime":
        ts = pd.to_datetime(df[d.timestamp])
    else:
        ts = pd.to_datetime(df[d.timestamp].astype("int64"), unit=d.timestamp_unit)
    out = pd.DataFrame({"user": user.to_numpy(), "item": items[keep].to_numpy(), "ts": ts.to_numpy()})
    out["basket"] = df[d.basket].astype(str).to_numpy() if d.basket else out["user"] + "@" + out["ts"].astype(str)
    if d.text:
        out["text"] = df[d.text].astype(str).str.strip().to_numpy()
    dropped["rows_kept"] = len(out)
    dropped["non_product_codes_sample"] = len(dropped_codes)
    if len(out) == 0:
        raise DataError(f"{path}: no interactions left after cleaning ({dropped})")
    return out.sort_values(["ts", "basket"], kind="stable").reset_index(drop=True), dropped


@dataclass
class Examples:
    """Model rows: ``history`` [n, L] item indices (newest first, 0-padded), targets as index lists."""

    history: np.ndarray
    targets: list[np.ndarray]
    users: list[str] = field(default_factory=list)
    age_days: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return len(self.targets)


@dataclass
class RecSplit:
    items: list[str]  # index -> item id ("" at 0)
    titles: list[str]
    index: dict[str, int]
    val_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp
    log: pd.DataFrame
    dropped: dict[str, int]
    history_len: int

    def encode(self, items: list[str]) -> list[int]:
        return [self.index[i] for i in items if i in self.index]

    def baskets(self, before: pd.Timestamp, after: pd.Timestamp | None = None) -> pd.DataFrame:
        """Distinct (user, basket, ts, item index) rows with ``after <= ts < before``."""
        df = self.log[self.log["ts"] < before]
        if after is not None:
            df = df[df["ts"] >= after]
        df = df[df["item"].isin(self.index)]
        return df.assign(idx=df["item"].map(self.index)).drop_duplicates(["basket", "idx"])

    def histories(self, before: pd.Timestamp) -> dict[str, list[int]]:
        """Per user: item indices of baskets before ``before``, newest basket first, capped at history_len."""
        df = self.baskets(before)
        out: dict[str, list[int]] = {}
        for user, g in df.groupby("user", sort=False):
            seq = g["idx"].to_numpy()[::-1]
            out[str(user)] = [int(x) for x in seq[: self.history_len]]
        return out

    def window(self, start: pd.Timestamp, stop: pd.Timestamp) -> Examples:
        """Warm users with a basket in [start, stop): history before ``start``, targets = every item bought in it."""
        hist = self.histories(start)
        win = self.baskets(stop, start)
        users, rows, targets = [], [], []
        for user, g in win.groupby("user", sort=True):
            h = hist.get(str(user))
            if not h:
                continue
            users.append(str(user))
            rows.append(h)
            targets.append(np.unique(g["idx"].to_numpy()))
        return Examples(pad(rows, self.history_len), targets, users)

    def training(self, before: pd.Timestamp, max_examples: int | None) -> Examples:
        """One row per basket before ``before`` that has history: the user's earlier baskets -> this basket."""
        df = self.baskets(before)
        L = self.history_len
        rows, targets, ages = [], [], []
        for _, g in df.groupby("user", sort=False):
            seq: list[int] = []
            for _, b in g.groupby("basket", sort=False):
                idx = b["idx"].to_numpy()
                if seq:
                    rows.append(seq[:L])
                    targets.append(np.unique(idx))
                    ages.append((before - b["ts"].iloc[0]) / timedelta(days=1))
                seq = [int(x) for x in idx[::-1]] + seq
        order = np.argsort(ages, kind="stable")
        if max_examples is not None:
            order = order[:max_examples]
        return Examples(pad([rows[i] for i in order], L), [targets[i] for i in order], [],
                        np.asarray([ages[i] for i in order], np.float64))


def pad(rows: list[list[int]], length: int) -> np.ndarray:
    out = np.zeros((len(rows), length), np.int64)
    for i, r in enumerate(rows):
        r = r[:length]
        out[i, : len(r)] = r
    return out


def make_split(log: pd.DataFrame, dropped: dict[str, int], s: RecSplitSection, history_len: int) -> RecSplit:
    """Temporal cut points; the catalogue = items bought before the test window (what a model could know)."""
    end = log["ts"].max() + pd.Timedelta(seconds=1)
    test_start = end - pd.Timedelta(days=s.test_days)
    val_start = test_start - pd.Timedelta(days=s.validation_days)
    if (log["ts"] < val_start).sum() == 0:
        raise DataError(f"the log spans {log['ts'].min()}..{end}: nothing is left for training before {val_start}")
    known = log[log["ts"] < test_start]
    items = [""] + list(dict.fromkeys(known["item"]))
    titles = [""] * len(items)
    if "text" in known:
        last = known.drop_duplicates("item", keep="last").set_index("item")["text"]
        titles = [""] + [str(last.get(i, "")) for i in items[1:]]
    index = {it: i for i, it in enumerate(items) if i}
    return RecSplit(items, titles, index, val_start, test_start, end, log, dropped, history_len)


def file_record(path: Path) -> dict[str, Any]:
    h = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path), "sha256": h}


def non_product_pattern_ok(pattern: str | None) -> None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as e:
            raise DataError(f"[data].item_pattern {pattern!r} is not a valid regex: {e}") from None
