"""The NER fallback: a dictionary of names seen in training (gazetteer.json, written by
training/train.py next to the model) and patterns for dates, times and numbers. No model: it answers
when the tagger cannot, at lower recall (names it never saw are missed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from workers.nlp.artifacts import MODELS_DIR
from workers.runners.base import ModelRunner

_DIGIT = "0-9０-９"
_CN = "零〇一二三四五六七八九十百千两"
_N = f"[{_DIGIT}{_CN}]+"
TIME = re.compile(
    rf"{_N}年(?:{_N}月(?:{_N}[日号])?)?"          # 一九九八年十二月三十一日, 1998年
    rf"|{_N}月{_N}[日号]"                           # 12月31日
    rf"|(?:上午|下午|晚上|凌晨|中午)?{_N}[点时](?:{_N}分)?"  # 下午三点二十分
    rf"|(?:今天|昨天|明天|今年|去年|明年|本月|上月|下月|新年|元旦|春节|除夕|当天|当晚|目前|近日)"
)
NUMBER = re.compile(rf"[{_DIGIT}]+(?:[.．][{_DIGIT}]+)?[%％]?|[{_CN}]{{2,}}(?:万|亿)?")


class GazetteerTagger(ModelRunner):
    """Parameters:
      model_dir: the NER model's directory (its gazetteer.json).
    """

    name = "ner-rules"

    def __init__(self, model_dir: Path = MODELS_DIR / "ner") -> None:
        super().__init__()
        self.model_dir = model_dir

    def _load(self) -> None:
        gazetteer = json.loads((self.model_dir / "gazetteer.json").read_text(encoding="utf-8"))
        self.names: dict[str, str] = {}
        for kind in ("LOC", "ORG", "PER"):  # a name listed under several types: PER wins
            for name in gazetteer.get(kind, []):
                self.names[name] = kind
        self.longest = max((len(n) for n in self.names), default=0)

    def tag(self, text: str) -> list[dict[str, Any]]:
        entities: list[dict[str, Any]] = []
        taken = [False] * len(text)
        for pattern, kind in ((TIME, "TIME"), (NUMBER, "NUM")):
            for m in pattern.finditer(text):
                if not any(taken[m.start() : m.end()]):
                    entities.append({"type": kind, "text": m.group(0), "start": m.start(), "end": m.end(), "score": None})
                    taken[m.start() : m.end()] = [True] * (m.end() - m.start())
        i = 0
        while i < len(text):  # longest match first
            for size in range(min(self.longest, len(text) - i), 1, -1):
                kind = self.names.get(text[i : i + size])
                if kind and not any(taken[i : i + size]):
                    entities.append({"type": kind, "text": text[i : i + size], "start": i, "end": i + size, "score": None})
                    i += size
                    break
            else:
                i += 1
        return sorted(entities, key=lambda e: e["start"])

    def run(self, inputs: list[str], options: dict[str, Any]) -> dict[str, Any]:
        return {"items": [{"entities": self.tag(text)} for text in inputs]}
