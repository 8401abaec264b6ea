"""Interaction log -> cleaned baskets -> temporal split -> model examples (history, targets).

Any log works by ``[data]`` alone: columns are mapped by name, optional ones may be absent. Item index 0 is
padding; real items are 1..N in first-seen order of the training log (deterministic).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from compress.errors import DataError
from compress.recommend.config import RecDataSection, RecSplitSection

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

    @cached_property
    def indexed(self) -> pd.DataFrame:
        """The log with each row's catalogue index in ``idx`` (0: not in the catalogue), mapped once."""
        idx = self.log["item"].map(self.index).fillna(0).to_numpy().astype(np.int64)
        return self.log.assign(idx=idx)

    def baskets(self, before: pd.Timestamp, after: pd.Timestamp | None = None) -> pd.DataFrame:
        """Distinct (user, basket, ts, item index) rows with ``after <= ts < before``."""
        df = self.indexed
        ts = df["ts"]
        keep = ((ts < before) & (df["idx"] > 0)).to_numpy()
        if after is not None:
            keep = keep & (ts >= after).to_numpy()
        return df[keep].drop_duplicates(["basket", "idx"])

    def histories(self, before: pd.Timestamp) -> dict[str, list[int]]:
        """Per user (first-seen order): item indices before ``before``, newest first, capped at history_len."""
        df = self.baskets(before)
        codes, users = pd.factorize(df["user"], sort=False)
        order = np.argsort(codes, kind="stable")
        idx = df["idx"].to_numpy()[order]
        bounds = np.searchsorted(codes[order], np.arange(len(users) + 1))
        L = self.history_len
        return {
            str(u): idx[max(a, b - L) : b][::-1].tolist()
            for u, a, b in zip(users, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        }

    def window(self, start: pd.Timestamp, stop: pd.Timestamp) -> Examples:
        """Warm users with a basket in [start, stop): history before ``start``, targets = every item bought in it."""
        hist = self.histories(start)
        win = self.baskets(stop, start)
        users, inverse = np.unique(win["user"].to_numpy().astype(str), return_inverse=True)
        idx = win["idx"].to_numpy()
        order = np.lexsort((idx, inverse))
        idx, bounds = idx[order], np.searchsorted(inverse[order], np.arange(len(users) + 1))
        names, rows, targets = [], [], []
        for user, a, b in zip(users.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            h = hist.get(user)
            if not h:
                continue
            names.append(user)
            rows.append(h)
            targets.append(np.unique(idx[a:b]))
        return Examples(pad(rows, self.history_len), targets, names)

    def training(self, before: pd.Timestamp, max_examples: int | None) -> Examples:
        """One row per basket before ``before`` that has history: the user's earlier baskets -> this basket.

        Vectorised: rows are ordered by user, then basket (both in first-seen order); a basket that is not its
        user's first gets the ``history_len`` rows before it, newest first. The most recent baskets come first.
        """
        df = self.baskets(before)
        L = self.history_len
        user = pd.factorize(df["user"], sort=False)[0]
        basket = df.groupby(["user", "basket"], sort=False).ngroup().to_numpy()
        order = np.lexsort((basket, user))
        user, basket, items = user[order], basket[order], df["idx"].to_numpy()[order]
        ts = df["ts"].to_numpy()[order]
        n = len(items)
        starts = np.flatnonzero(np.r_[True, basket[1:] != basket[:-1]]) if n else np.zeros(0, np.int64)
        user_start = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if n else np.zeros(0, np.int64)
        first_row = user_start[np.searchsorted(user_start, starts, side="right") - 1] if n else starts
        ends = np.r_[starts[1:], n].astype(np.int64)
        has_history = starts > first_row
        starts, ends, first_row = starts[has_history], ends[has_history], first_row[has_history]
        day = timedelta(days=1)
        ages = np.asarray([(before - pd.Timestamp(t)) / day for t in ts[starts]], np.float64)
        pick = np.argsort(ages, kind="stable")
        if max_examples is not None:
            pick = pick[:max_examples]
        starts, ends, first_row = starts[pick], ends[pick], first_row[pick]
        pos = starts[:, None] - 1 - np.arange(L)[None, :]
        history = np.where(pos >= first_row[:, None], items[np.maximum(pos, 0)], PAD).astype(np.int64)
        targets = [np.unique(items[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        return Examples(history.reshape(len(pick), L), targets, [], ages[pick])


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
