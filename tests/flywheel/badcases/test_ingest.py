"""Feedback records are untrusted: their `image` path must stay inside the feedback file's folder."""

import json
import os

import pytest

from flywheel.badcases import BadCaseStore, FeedbackError, ingest_file
from tests.images import encode, photo_like


@pytest.fixture
def layout(tmp_path):
    """tmp/secret.png outside the feedback folder, tmp/fb/inside.png inside it, a symlink out of it."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(encode(photo_like(40, 30, seed=1), "PNG"))
    folder = tmp_path / "fb"
    folder.mkdir()
    (folder / "inside.png").write_bytes(encode(photo_like(40, 30, seed=2), "PNG"))
    os.symlink(secret, folder / "link.png")
    return tmp_path, folder, secret


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("../secret.png", "outside the feedback folder"),
        ("sub/../../secret.png", "outside the feedback folder"),
        ("link.png", "outside the feedback folder"),
        ("ABSOLUTE", "absolute path"),
    ],
)
def test_feedback_image_outside_the_folder_is_rejected_with_a_reason(layout, image, reason):
    tmp_path, folder, secret = layout
    image = str(secret) if image == "ABSOLUTE" else image
    path = folder / "fb.jsonl"
    path.write_text(json.dumps({"prompt": "a cat", "image": image, "rating": 1}) + "\n")
    store = BadCaseStore(tmp_path / "bc")
    with pytest.raises(FeedbackError, match=reason):
        ingest_file(store, path)
    report = ingest_file(store, path, skip_invalid=True)
    assert report.result.added == 0 and reason in report.invalid[0]
    stored = [p for p in (tmp_path / "bc").rglob("*") if p.is_file() and p.read_bytes() == secret.read_bytes()]
    assert stored == []  # the outside file's bytes never reached the store


def test_feedback_image_inside_the_folder_is_ingested(layout):
    tmp_path, folder, _ = layout
    path = folder / "fb.jsonl"
    path.write_text(json.dumps({"prompt": "a cat", "image": "./inside.png", "rating": 1}) + "\n")
    store = BadCaseStore(tmp_path / "bc")
    assert ingest_file(store, path).result.added == 1
    assert store.list()[0]["output_image"]
