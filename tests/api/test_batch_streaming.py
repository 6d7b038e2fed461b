"""``fusebox submit`` reads its inputs one at a time, as it submits them."""

from __future__ import annotations

from pathlib import Path

from api.batch import collect_inputs


def test_inputs_are_read_as_the_batch_goes_not_all_first(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png"):
        (folder / name).write_bytes(name.encode())
    inputs = collect_inputs("ocr", [str(folder)])
    first = next(inputs)
    assert first.source.endswith("a.png") and first.content == b"a.png"
    # Rewritten after the batch started but before its turn: read at its turn.
    (folder / "b.png").write_bytes(b"b, edited")
    rest = list(inputs)
    assert [(Path(i.source).name, i.content) for i in rest] == [("b.png", b"b, edited"), ("c.png", b"sub/c.png")]


def test_an_empty_folder_is_still_one_rejected_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    items = list(collect_inputs("ocr", [str(tmp_path / "empty")]))
    assert len(items) == 1 and items[0].error and "no " in items[0].error


def test_the_results_file_is_never_an_input(tmp_path: Path) -> None:
    (tmp_path / "reviews.txt").write_text("好评\n", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    out.write_text('{"input": "x", "status": "ok"}\n', encoding="utf-8")
    items = list(collect_inputs("sentiment", [str(tmp_path)], exclude=out))
    assert [(Path(i.source).name, i.content) for i in items] == [("reviews.txt:1", "好评")]
