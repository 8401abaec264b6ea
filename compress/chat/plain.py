"""A published chatbot version on plain customer phrasing: short, lowercase, unpunctuated, typo'd messages.

Bitext's utterances are generated from templates, so held-out accuracy on them says little about the way
customers really type ("where is my parcel"). This scores a version, through its own tokenizer, model and
handoff threshold (the serving path's decision), on a small hand-written set labelled with its intents
(``tests/fixtures/plain_phrasings.json``).

    python -m compress.chat.plain /tmp/chat-repo/chat-intent/2 [--set FILE] [--model model.onnx] [--show]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from compress.config import PROJECT_ROOT
from compress.errors import DataError

PLAIN_SET = PROJECT_ROOT / "tests" / "fixtures" / "plain_phrasings.json"


def load_plain(path: Path = PLAIN_SET) -> list[tuple[str, str]]:
    """(message, intent) rows of a plain-phrasing file: ``{"messages": [{"text": ..., "intent": ...}]}``."""
    try:
        rows = json.loads(path.read_text())["messages"]
        return [(str(r["text"]), str(r["intent"])) for r in rows]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a plain-phrasing file ({e})") from None


def score_plain(version_dir: Path, rows: list[tuple[str, str]], model: str = "") -> dict[str, Any]:
    """Accuracy, low-confidence handoff rate and answered-correctly rate of a published version on ``rows``.

    ``handoff_rate`` counts the confidence handoffs only (below the version's threshold); an intent that is
    also handed off by design (``contact_human_agent``) is answered, not a miss. ``answered`` = right intent
    and confident enough to be answered by the bot.
    """
    import onnxruntime as ort

    from app.repository import read_manifest
    from app.tasks.chat.text import load_version

    manifest = read_manifest(version_dir)
    pre, post = load_version(version_dir, manifest)
    intents = post.state.intents
    unknown = sorted({k for _, k in rows} - set(intents))
    if unknown:
        raise DataError(f"plain-phrasing labels {unknown} are not intents of {version_dir}")
    path = version_dir / (model or manifest.artifact().path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    texts = [t for t, _ in rows]
    ids, mask = pre.batch(texts)
    (logits,) = sess.run(["logits"], {"input_ids": ids, "attention_mask": mask})
    top, conf, low = post.decide(logits)
    truth = np.array([intents.index(k) for _, k in rows])
    right = top == truth
    return {
        "rows": len(rows),
        "accuracy": round(float(right.mean()), 5),
        "handoff_rate": round(float(low.mean()), 5),
        "answered": round(float((right & ~low).mean()), 5),
        "threshold": post.state.threshold,
        "misses": [
            {"text": t, "intent": k, "got": intents[int(p)], "confidence": round(float(c), 3), "handoff": bool(h)}
            for (t, k), p, c, h, ok in zip(rows, top, conf, low, right, strict=True)
            if h or not ok
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compress.chat.plain", description=__doc__.split("\n")[0])
    ap.add_argument("version_dir", type=Path, help="a published chat-intent version folder")
    ap.add_argument("--set", type=Path, default=PLAIN_SET, help="plain-phrasing JSON file")
    ap.add_argument("--model", default="", help="ONNX file in the folder (default: the version's artifact)")
    ap.add_argument("--show", action="store_true", help="list every miss and handoff")
    a = ap.parse_args(argv)
    out = score_plain(a.version_dir, load_plain(a.set), a.model)
    misses = out.pop("misses")
    print(json.dumps(out))
    if a.show:
        for m in misses:
            print(json.dumps(m))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
