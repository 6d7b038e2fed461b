"""One content hash for payloads, the result cache and batches: its values must not move
(stored payload keys, cached answers and batch output files name content by it)."""

from __future__ import annotations

import hashlib

from api.batch import Item
from workers.hashing import content_hash
from workers.jobs import Job


def test_parts_are_joined_by_nul_bytes() -> None:
    assert content_hash(b"\x89PNG") == hashlib.sha256(b"\x89PNG").hexdigest()
    assert content_hash("ocr", "好评") == hashlib.sha256("ocr\0好评".encode()).hexdigest()
    assert content_hash("ab", "c") != content_hash("a", "bc")


def test_a_jobs_hash_covers_model_input_and_options() -> None:
    job = Job(model="sentiment", text="好评", options={"b": 1, "a": 2})
    assert job.content_hash == hashlib.sha256('sentiment\0好评\0{"a": 2, "b": 1}'.encode()).hexdigest()
    texts = Job(model="ner", texts=["é", "x"])
    assert texts.content_hash == hashlib.sha256('ner\0["é", "x"]\0{}'.encode()).hexdigest()


def test_a_batch_items_hash_covers_task_and_content() -> None:
    assert Item("a.txt", content="héllo").content_hash("sentiment") == content_hash("sentiment", "héllo".encode())
    assert Item("a.png", content=b"\x00").content_hash("ocr") == hashlib.sha256(b"ocr\0\x00").hexdigest()
