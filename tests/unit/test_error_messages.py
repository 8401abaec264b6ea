"""Messages about unknown names list the valid ones and suggest the close match."""

from __future__ import annotations

from app.errors import names_hint


def test_close_match_is_case_insensitive_and_valid_names_are_listed() -> None:
    hint = names_hint(["i5"], {"I5", "I6", "C1"}, "valid features")
    assert hint == "did you mean 'I5'? valid features: C1, I5, I6", hint


def test_no_guess_without_a_close_name_and_an_empty_list_says_none() -> None:
    assert names_hint("zzz", {"ad-ctr"}, "models served") == "models served: ad-ctr"
    assert names_hint("ad-ctr", set(), "models served") == "models served: none"


def test_long_lists_are_cut_with_a_count() -> None:
    hint = names_hint("x", {f"f{i:03d}" for i in range(100)}, "valid features", limit=3)
    assert hint == "valid features: f000, f001, f002, ... (97 more)", hint


def test_several_unknown_names_each_get_their_guess_once() -> None:
    hint = names_hint(["ad-ctrr", "ad_ctr", "chat-intnt"], {"ad-ctr", "chat-intent"}, "models")
    assert hint.startswith("did you mean 'ad-ctr' or 'chat-intent'? "), hint
