"""Interaction log -> cleaned baskets -> temporal split -> model examples (history, targets).

Any log works by ``[data]`` alone: columns are mapped by name, optional ones may be absent. Item index 0 is
padding; real items are 1..N in first-seen order of the training log (deterministic).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeAlias

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
    cols = list(
        dict.fromkeys(c for c in (d.user, d.item, d.timestamp, d.basket, d.quantity, d.price, d.text, d.rating) if c)
    )
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
    if d.items_path:
        out["text"] = out["item"].map(read_titles(d)).fillna("").to_numpy()
    out["pos"] = True
    if d.rating and d.min_rating is not None:
        out["pos"] = (pd.to_numeric(df[d.rating], errors="coerce") >= d.min_rating).to_numpy()
        dropped["below_min_rating"] = int((~out["pos"]).sum())
    dropped["rows_kept"] = len(out)
    dropped["non_product_codes_sample"] = len(dropped_codes)
    if len(out) == 0:
        raise DataError(f"{path}: no interactions left after cleaning ({dropped})")
    return out.sort_values(["ts", "basket"], kind="stable").reset_index(drop=True), dropped


def read_titles(d: RecDataSection) -> pd.Series:
    """item id -> title from ``[data].items_path`` (the join key read as text, like the log's item ids)."""
    from compress.config import resolve_path

    assert d.items_path and d.items_id and d.items_text
    path = resolve_path(d.items_path)
    if not path.is_file():
        raise DataError(f"items file {path} not found (set DATA_DIR or [data].items_path)")
    cols = [d.items_id, d.items_text]
    try:
        if d.items_format == "parquet":
            raw = pd.read_parquet(path, columns=cols)
        else:
            sep = "\t" if d.items_format == "tsv" else ","
            raw = pd.read_csv(path, sep=sep, usecols=cols, dtype={d.items_id: str})
    except (ValueError, KeyError) as e:
        raise DataError(f"{path}: cannot read columns {cols}: {e}") from None
    ids = raw[d.items_id].astype(str).str.strip()
    return pd.Series(raw[d.items_text].astype(str).str.strip().to_numpy(), index=ids).groupby(level=0).last()


@dataclass
class Examples:
    """Model rows: ``history`` [n, L] item indices (newest first, 0-padded), targets as index lists."""

    history: np.ndarray
    targets: list[np.ndarray]
    users: list[str] = field(default_factory=list)
    age_days: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seen: list[np.ndarray] = field(default_factory=list)
    """Per row: every catalogue item the user interacted with before the target (any rating)."""

    def seen_matrix(self) -> np.ndarray:
        """``seen`` as a 0-padded [n, max] matrix: the model's ``exclude`` input."""
        width = max([1] + [len(s) for s in self.seen])
        out = np.zeros((len(self), width), np.int64)
        for i, s in enumerate(self.seen):
            out[i, : len(s)] = s
        return out

    def __len__(self) -> int:
        return len(self.targets)


TRAIN, VALIDATION, TEST = 0, 1, 2
"""Parts of the split: a cut ``p`` means "rows of parts < p" (training data before VALIDATION, known before TEST)."""

Cut: TypeAlias = pd.Timestamp | int
"""Where data ends: a part (``VALIDATION``, ``TEST``) or, on a ``time`` split, any timestamp."""


@dataclass
class RecSplit:
    items: list[str]  # index -> item id ("" at 0)
    titles: list[str]
    index: dict[str, int]
    val_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp
    log: pd.DataFrame  # positive interactions, each with its ``part``
    dropped: dict[str, int]
    history_len: int
    kind: str = "time"
    everything: pd.DataFrame | None = None
    """Every interaction, positive or not, with its ``part``: what a user has seen."""

    def encode(self, items: list[str]) -> list[int]:
        return [self.index[i] for i in items if i in self.index]

    @cached_property
    def indexed(self) -> pd.DataFrame:
        """The log with each row's catalogue index in ``idx`` (0: not in the catalogue), mapped once."""
        return self._indexed(self.log)

    def _indexed(self, df: pd.DataFrame) -> pd.DataFrame:
        idx = df["item"].map(self.index).fillna(0).to_numpy().astype(np.int64)
        return df.assign(idx=idx)

    @staticmethod
    def _before(df: pd.DataFrame, cut: Cut) -> np.ndarray:
        if isinstance(cut, int):
            return np.asarray((df["part"] < cut).to_numpy(), bool)
        return np.asarray((df["ts"] < cut).to_numpy(), bool)

    def start(self, cut: Cut) -> pd.Timestamp:
        """When the data before ``cut`` ends: the cut itself on a ``time`` split, else its latest row + 1 s."""
        if not isinstance(cut, int):
            return cut
        if self.kind == "time":
            return self.val_start if cut == VALIDATION else self.test_start
        ts = self.log["ts"][self._before(self.log, cut)]
        return (ts.max() if len(ts) else self.log["ts"].min()) + pd.Timedelta(seconds=1)

    def baskets(self, before: Cut, after: pd.Timestamp | None = None) -> pd.DataFrame:
        """Distinct (user, basket, ts, item index) rows before ``before`` with ``ts >= after``."""
        df = self.indexed
        keep = self._before(df, before) & (df["idx"] > 0).to_numpy()
        if after is not None:
            keep = keep & (df["ts"] >= after).to_numpy()
        return df[keep].drop_duplicates(["basket", "idx"])

    def histories(self, before: Cut) -> dict[str, list[int]]:
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

    def seen(self, before: Cut) -> dict[str, np.ndarray]:
        """Per user: every catalogue item of any interaction (any rating) before ``before``, sorted."""
        df = self._indexed(self.log if self.everything is None else self.everything)
        df = df[self._before(df, before) & (df["idx"] > 0).to_numpy()]
        return {str(u): np.unique(g.to_numpy()) for u, g in df.groupby("user", sort=False)["idx"]}

    def window(self, part: int) -> Examples:
        """Warm users with a basket in ``part``: history before it, targets = every item of their baskets in it."""
        hist = self.histories(part)
        seen = self.seen(part)
        df = self.indexed
        win = df[(df["part"] == part).to_numpy() & (df["idx"] > 0).to_numpy()].drop_duplicates(["basket", "idx"])
        users, inverse = np.unique(win["user"].to_numpy().astype(str), return_inverse=True)
        idx = win["idx"].to_numpy()
        order = np.lexsort((idx, inverse))
        idx, bounds = idx[order], np.searchsorted(inverse[order], np.arange(len(users) + 1))
        names, rows, targets, seens = [], [], [], []
        for user, a, b in zip(users.tolist(), bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            h = hist.get(user)
            if not h:
                continue
            names.append(user)
            rows.append(h)
            targets.append(np.unique(idx[a:b]))
            seens.append(seen.get(user, np.zeros(0, np.int64)))
        return Examples(pad(rows, self.history_len), targets, names, seen=seens)

    def training(self, before: Cut, max_examples: int | None) -> Examples:
        """One row per basket before ``before`` that has history: the user's earlier baskets -> this basket.

        Vectorised: rows are ordered by user, then basket (both in first-seen order); a basket that is not its
        user's first gets the ``history_len`` rows before it, newest first. The most recent baskets come first.
        """
        df = self.baskets(before)
        end = self.start(before)
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
        ages = (np.datetime64(end.to_datetime64()) - ts[starts]) / np.timedelta64(1, "D")
        ages = np.asarray(ages, np.float64)
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


def _leave_last_parts(everything: pd.DataFrame, n: int) -> np.ndarray:
    """Per user: the last ``n`` positive baskets are TEST, the ``n`` before VALIDATION (users with at least
    ``2n + 1``); any other row of the user (a low rating) takes the part its time falls in."""
    pos = everything[everything["pos"].to_numpy()]
    key = pos["user"].astype(str) + "\x00" + pos["basket"].astype(str)
    first = ~key.duplicated().to_numpy()
    number = pd.Series(first.astype(np.int64), index=pos.index).groupby(pos["user"].to_numpy()).cumsum()
    basket_no = key.map(pd.Series(number[first].to_numpy(), index=key[first].to_numpy()))
    total = basket_no.groupby(pos["user"].to_numpy()).transform("max")
    from_end = (total - basket_no).to_numpy()
    eligible = (total >= 2 * n + 1).to_numpy()
    pos_part = np.where(eligible & (from_end < n), TEST, np.where(eligible & (from_end < 2 * n), VALIDATION, TRAIN))
    parts = pd.Series(pos_part, index=pos.index)
    starts = pos.assign(part=pos_part).groupby(["user", "part"])["ts"].min().unstack()
    part = np.full(len(everything), TRAIN, np.int64)
    for p in (VALIDATION, TEST):
        if p in starts:
            begin = everything["user"].map(starts[p]).to_numpy()
            later = ~pd.isna(begin)
            later[later] = everything["ts"].to_numpy()[later] >= begin[later].astype("datetime64[ns]")
            part[later] = p
    is_pos = everything["pos"].to_numpy()
    part[is_pos] = parts.reindex(everything.index[is_pos]).to_numpy()
    return part


def make_split(log: pd.DataFrame, dropped: dict[str, int], s: RecSplitSection, history_len: int) -> RecSplit:
    """Cut points (a global time cut or per user leave-last-N-out); the catalogue = positive items known before
    the test part (what a model could know). ``log`` may carry ``pos`` (False: seen, not a positive)."""
    everything = log if "pos" in log else log.assign(pos=True)
    end = log["ts"].max() + pd.Timedelta(seconds=1)
    test_start = end - pd.Timedelta(days=s.test_days)
    val_start = test_start - pd.Timedelta(days=s.validation_days)
    if s.kind == "time":
        ts = everything["ts"]
        everything = everything.assign(part=(ts >= val_start).astype(np.int64) + (ts >= test_start).astype(np.int64))
        if (everything["part"] == TRAIN).sum() == 0:
            raise DataError(f"the log spans {log['ts'].min()}..{end}: nothing is left for training before {val_start}")
    else:
        everything = everything.assign(part=_leave_last_parts(everything, s.leave_last))
        if not (everything["part"] == TEST).any():
            raise DataError(f"no user has {2 * s.leave_last + 1} positive baskets: nothing to hold out")
    positives = everything[everything["pos"].to_numpy()].reset_index(drop=True)
    known = positives[(positives["part"] < TEST).to_numpy()]
    items = [""] + list(dict.fromkeys(known["item"]))
    titles = [""] * len(items)
    if "text" in known:
        last = known.drop_duplicates("item", keep="last").set_index("item")["text"]
        titles = [""] + [str(last.get(i, "")) for i in items[1:]]
    index = {it: i for i, it in enumerate(items) if i}
    return RecSplit(
        items, titles, index, val_start, test_start, end, positives, dropped, history_len, s.kind, everything
    )


def file_record(path: Path) -> dict[str, Any]:
    h = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"path": str(path), "sha256": h}


def non_product_pattern_ok(pattern: str | None) -> None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as e:
            raise DataError(f"[data].item_pattern {pattern!r} is not a valid regex: {e}") from None
