"""Key fields by rules: dates, amounts, ID-card numbers, invoice numbers and phone numbers,
from whatever text there is (the model's OCR, or the CPU fallback's rougher one).

OCR drops spaces between Chinese and Latin runs (``发票号码12345678金额￥5,600.00``), so the
patterns do not rely on word boundaries: digit runs are delimited with look-arounds on
digits instead, which also keeps a phone number from being found inside an ID number.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}

_DATE_PATTERNS = [
    # 2026-11-24, 2026/11/24, 2026.11.24
    (re.compile(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)"), ("y", "m", "d")),
    # 2026年11月24日
    (re.compile(r"(?<!\d)(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日"), ("y", "m", "d")),
    # 24 Nov 2026, 24-Nov-2026
    (re.compile(r"(?<!\d)(\d{1,2})[\s-]+([A-Za-z]{3})[a-z]*\.?[\s-]+(\d{4})(?!\d)"), ("d", "b", "y")),
    # Nov 24, 2026
    (re.compile(r"\b([A-Za-z]{3})[a-z]*\.?\s+(\d{1,2}),?\s+(\d{4})(?!\d)"), ("b", "d", "y")),
]

_CURRENCY_SYMBOLS = {"$": "USD", "US$": "USD", "¥": "CNY", "￥": "CNY", "€": "EUR", "£": "GBP"}
_CURRENCY_CODES = {"USD", "CNY", "RMB", "EUR", "GBP", "HKD", "JPY"}
_AMOUNT = re.compile(
    r"(?P<pre>US\$|[$¥￥€£]|\b(?:USD|CNY|RMB|EUR|GBP|HKD|JPY)\b)\s*(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?)"
    r"|(?P<num2>\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?)\s*(?P<post>元|(?:USD|CNY|RMB|EUR|GBP)\b)"
)
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx])(?![0-9A-Za-z])")
_ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_ID_CHECK = "10X98765432"
_INVOICE = re.compile(
    r"(?:invoice\s*(?:no\.?|number|num\.?|#)|inv\.?\s*no\.?|发票号码|发票号|发票代码)\s*[:：#]?\s*([A-Za-z0-9][A-Za-z0-9-]{3,30})",
    re.IGNORECASE,
)
_INVOICE_TOKEN = re.compile(r"(?<![A-Za-z0-9])(INV-?[A-Z0-9][A-Z0-9-]{2,30})(?![A-Za-z0-9])")
_PHONES = [
    re.compile(r"(?<![\d+])(?:\+?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)"),  # China mobile
    re.compile(r"(?<![\d+])(0\d{2,3})-(\d{7,8})(?!\d)"),  # China landline
    re.compile(r"(?<![\d+])(\+\d{1,3})[\s-]?(\(?\d{1,4}\)?)[\s-]?(\d{3,4})[\s-]?(\d{3,4})(?!\d)"),  # international
    re.compile(r"(?<![\d+])\(?(\d{3})\)?[\s-](\d{3})-(\d{4})(?!\d)"),  # North American
]


def _dates(text: str) -> list[str]:
    found: list[str] = []
    for pattern, order in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            parts = dict(zip(order, match.groups()))
            try:
                month = int(parts["m"]) if "m" in parts else _MONTHS[parts["b"][:3].lower()]
                day = dt.date(int(parts["y"]), month, int(parts["d"]))
            except (KeyError, ValueError):
                continue  # not a real date (2026-13-45) or not a month name
            found.append(day.isoformat())
    return list(dict.fromkeys(found))


def _amounts(text: str) -> list[dict[str, str]]:
    found = []
    for match in _AMOUNT.finditer(text):
        marker = match.group("pre") or match.group("post")
        number = match.group("num") or match.group("num2")
        currency = _CURRENCY_SYMBOLS.get(marker) or ("CNY" if marker in ("元", "RMB") else marker)
        if currency not in _CURRENCY_CODES | {"CNY"}:
            continue
        found.append({"value": number.replace(",", ""), "currency": currency, "text": match.group(0).strip()})
    return found


def id_check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID's first 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def valid_id_card(number: str) -> bool:
    """A mainland China resident ID (18 characters): real birth date and ISO 7064 check."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return number[17].upper() == id_check_character(number[:17])


def _id_numbers(text: str) -> list[str]:
    return list(dict.fromkeys(m.upper() for m in _ID_CARD.findall(text) if valid_id_card(m)))


def _invoice_numbers(text: str) -> list[str]:
    found = [m.group(1).rstrip("-") for m in _INVOICE.finditer(text)]
    found += _INVOICE_TOKEN.findall(text)
    # A keyword-led capture may swallow the amount label OCR glued on ("12345678金额" stops
    # at the Chinese anyway); drop pure words with no digit.
    return list(dict.fromkeys(f for f in found if any(c.isdigit() for c in f)))


def _phones(text: str, taken: set[str]) -> list[str]:
    found = []
    for pattern in _PHONES:
        for match in pattern.finditer(text):
            raw = match.group(0)
            digits = re.sub(r"[^\d+]", "", raw)
            if digits.lstrip("+") in taken or not 7 <= len(digits.lstrip("+")) <= 15:
                continue
            if pattern is _PHONES[0]:
                digits = "+86" + "".join(match.groups())
            found.append(digits)
    return list(dict.fromkeys(found))


def extract_key_fields(text: str) -> dict[str, Any]:
    """The key fields found in ``text``, each list in order of first appearance."""
    ids = _id_numbers(text)
    invoices = _invoice_numbers(text)
    return {
        "dates": _dates(text),
        "amounts": _amounts(text),
        "id_numbers": ids,
        "invoice_numbers": invoices,
        "phones": _phones(text, taken=set(ids) | set(invoices)),
    }
