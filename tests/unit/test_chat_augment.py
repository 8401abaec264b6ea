"""Training-set augmentation of the chatbot: perturbed copies with their source's intent, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from compress.chat.augment import augment, plain
from compress.chat.config import ChatTrainSection

TEXTS = ["I need to track my order #1234, please!", "How can I get a refund?", "Cancel my purchase now."]
LABELS = np.array([3, 7, 1])


def test_plain_lowercases_and_strips_punctuation_but_keeps_word_symbols() -> None:
    assert plain("I need to track my order #1234, please!", np.random.default_rng(0)) == (
        "i need to track my order #1234 please"
    )
    assert plain("Where's my $20 refund?!", np.random.default_rng(0)) == "where's my $20 refund"


def test_copies_keep_their_source_intent_and_are_seeded() -> None:
    texts, labels, added = augment(TEXTS, LABELS, ["plain", "typo", "drop_word"], 1.0, seed=0)
    assert texts[:3] == TEXTS and list(labels[:3]) == [3, 7, 1], "the originals must come first, unchanged"
    assert added == {"plain": 3, "typo": 3, "drop_word": 3}, added
    assert len(texts) == len(labels) == 12
    for t, y in zip(texts[3:], labels[3:], strict=True):
        src = [i for i, s in enumerate(TEXTS) if LABELS[i] == y]
        assert len(src) == 1 and t != TEXTS[src[0]], f"{t!r} labelled {y} is not a changed copy of its source"
    again, _, _ = augment(TEXTS, LABELS, ["plain", "typo", "drop_word"], 1.0, seed=0)
    other, _, _ = augment(TEXTS, LABELS, ["plain", "typo", "drop_word"], 1.0, seed=1)
    assert again == texts, "same seed, different copies"
    assert other[3:6] == texts[3:6] and other != texts, "plain is deterministic; typo/drop_word follow the seed"


def test_share_bounds_the_copies_and_duplicates_are_dropped() -> None:
    texts, labels, added = augment(TEXTS * 10, np.tile(LABELS, 10), ["plain"], 0.5, seed=0)
    assert added == {"plain": 3}, f"30 rows (3 distinct), half copied: only 3 distinct copies expected, {added}"
    assert len(texts) == 33 and len(labels) == 33


def test_config_refuses_unknown_kinds_and_shares() -> None:
    assert ChatTrainSection(augment=["plain", "typo"]).augment == ["plain", "typo"]
    with pytest.raises(ValueError, match="augment"):
        ChatTrainSection(augment=["shout"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="augment_share"):
        ChatTrainSection(augment_share=0)
