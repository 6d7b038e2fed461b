from __future__ import annotations

import pytest

from workers.fields import extract_key_fields, valid_id_card


def test_invoice_page_as_ocr_reads_it() -> None:
    text = "\n".join([
        "INVOICE No. INV-2026-00417",
        "Date: 2026-11-24 Total: $1,234.50",
        "Phone: +86 138 0013 8000",
        "发票号码12345678金额￥5,600.00",
        "身份证号11010519491231002X",
    ])
    f = extract_key_fields(text)
    assert f["dates"] == ["2026-11-24"]
    assert [(a["value"], a["currency"]) for a in f["amounts"]] == [("1234.50", "USD"), ("5600.00", "CNY")]
    assert f["id_numbers"] == ["11010519491231002X"]
    assert f["invoice_numbers"] == ["INV-2026-00417", "12345678"]
    assert f["phones"] == ["+8613800138000"]


@pytest.mark.parametrize("text, expected", [
    ("开票日期 2026年3月5日", ["2026-03-05"]),
    ("Due 24 Nov 2026 or Dec 1, 2026", ["2026-11-24", "2026-12-01"]),
    ("2026/02/30 is no date", []),
    ("version 1.2.3 build 2026.1.2", ["2026-01-02"]),
])
def test_dates(text: str, expected: list[str]) -> None:
    assert extract_key_fields(text)["dates"] == expected


@pytest.mark.parametrize("text, expected", [
    ("共计 5600元", [("5600", "CNY")]),
    ("Amount EUR 99.90", [("99.90", "EUR")]),
    ("Paid €12 and £3.5", [("12", "EUR"), ("3.5", "GBP")]),
    ("order 12345 qty 3", []),
])
def test_amounts(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(a["value"], a["currency"]) for a in extract_key_fields(text)["amounts"]] == expected


def test_id_numbers_need_a_valid_check_digit_and_birth_date() -> None:
    assert valid_id_card("11010519491231002X")
    assert not valid_id_card("110105194912310021")  # wrong check digit
    assert not valid_id_card("11010519491331002X")  # month 13
    f = extract_key_fields("ID 110105194912310021 / 11010519491231002x")
    assert f["id_numbers"] == ["11010519491231002X"]
    assert f["phones"] == []  # no phone carved out of an ID number


@pytest.mark.parametrize("text, expected", [
    ("Tel: 010-88886666", ["01088886666"]),
    ("call (415) 555-0123", ["4155550123"]),
    ("手机13912345678", ["+8613912345678"]),
    ("+44 20 7946 0958", ["+442079460958"]),
    ("invoice 2026112400001234", []),
])
def test_phones(text: str, expected: list[str]) -> None:
    assert extract_key_fields(text)["phones"] == expected


def test_invoice_numbers() -> None:
    f = extract_key_fields("Invoice #A-7781 and inv no: 2026-55; 发票代码 044031900111")
    assert f["invoice_numbers"] == ["A-7781", "2026-55", "044031900111"]
    assert extract_key_fields("Invoice number: pending")["invoice_numbers"] == []


def test_nothing_in_nothing() -> None:
    assert extract_key_fields("") == {"dates": [], "amounts": [], "id_numbers": [], "invoice_numbers": [], "phones": []}
