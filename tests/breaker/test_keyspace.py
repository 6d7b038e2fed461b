"""Every key name fusebox builds is one that breaker.keyspace.KEYS describes."""

from __future__ import annotations

import inspect
import re

import pytest

from breaker.keyspace import KEYS, Keyspace


def _regex(pattern: str) -> re.Pattern[str]:
    text = re.escape(pattern)
    text = re.sub(r"\\\[(.*?)\\\]", r"(?:\1)?", text)  # [:ends] is optional
    text = re.sub(r"<([^<>]*\|[^<>]*)>", lambda m: "(?:" + m.group(1).replace("\\|", "|") + ")", text)
    text = re.sub(r"<[^<>]+>", r"[^:]+", text)  # <name>, <task id>: one part
    return re.compile(f"^{text}$")


DESCRIBED = [_regex(k.pattern.replace("<prefix>", "pfx")) for k in KEYS]


def _built_names(space: Keyspace) -> list[str]:
    names: list[str] = []
    for attr, member in inspect.getmembers(Keyspace):
        if attr.startswith("_") or attr == "prefix":
            continue
        if isinstance(member, property):
            value = getattr(space, attr)
        else:
            arity = len(inspect.signature(member).parameters) - 1
            value = getattr(space, attr)(*["ocr", "v1", "abc123", "hook"][:arity])
        names += value if isinstance(value, list) else [value]
    return names


def test_every_built_key_is_described() -> None:
    names = _built_names(Keyspace("pfx"))
    assert len(names) > 25
    for name in names:
        if name.endswith(":rerouted:"):  # a prefix of per-job markers
            name += "some-task-id"
        assert any(r.match(name) for r in DESCRIBED), f"{name} is built but not described in breaker.keyspace.KEYS"


def test_every_described_key_is_built() -> None:
    names = [n + ("some-task-id" if n.endswith(":rerouted:") else "") for n in _built_names(Keyspace("pfx"))]
    for doc, regex in zip(KEYS, DESCRIBED, strict=True):
        assert any(regex.match(n) for n in names), f"{doc.pattern} is described but nothing builds it"


def test_breaker_names_that_could_split_a_key_are_refused() -> None:
    with pytest.raises(ValueError):
        Keyspace("pfx").breaker("ocr:window")
