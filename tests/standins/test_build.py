"""The build cache key: what changes a stand-in image's hash and what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.images.build import SERVICE_IMAGES, ServiceImage, source_hash

BASE = "sha256:base"


@pytest.fixture
def context(tmp_path: Path) -> ServiceImage:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "app.py").write_text("print('hello')\n")
    return ServiceImage("demo", tmp_path, {"SERVICE": "demo"})


def test_hash_is_stable(context: ServiceImage) -> None:
    assert source_hash(context, BASE) == source_hash(context, BASE)


@pytest.mark.parametrize(
    "change",
    ["content", "new-file", "mode", "build-arg", "base"],
)
def test_hash_follows_what_goes_into_the_image(
    context: ServiceImage, change: str
) -> None:
    before = source_hash(context, BASE)
    base = BASE
    if change == "content":
        (context.context / "app.py").write_text("print('bye')\n")
    elif change == "new-file":
        (context.context / "extra.txt").write_text("x")
    elif change == "mode":
        (context.context / "app.py").chmod(0o755)
    elif change == "build-arg":
        context = ServiceImage("demo", context.context, {"SERVICE": "other"})
    else:
        base = "sha256:rebuilt-base"
    assert source_hash(context, base) != before


def test_hash_ignores_bytecode(context: ServiceImage) -> None:
    before = source_hash(context, BASE)
    cache = context.context / "__pycache__"
    cache.mkdir()
    (cache / "app.cpython-311.pyc").write_bytes(b"\0")
    (context.context / "stray.pyc").write_bytes(b"\0")
    assert source_hash(context, BASE) == before


def test_services_sharing_a_context_get_different_hashes() -> None:
    hashes = {source_hash(image, BASE) for image in SERVICE_IMAGES}
    assert len(hashes) == len(SERVICE_IMAGES)
