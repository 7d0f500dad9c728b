"""Data sources: files, callables, synthetic; streaming re-batching; shape and dtype checks."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import resolver_for
from hypothesis import given, settings
from hypothesis import strategies as st

from optcli.calibration import SourceContext, stream
from optcli.calibration.base import rebatch
from optcli.calibration.files import FilesSource
from optcli.calibration.python_callable import CallableSource
from optcli.calibration.synthetic import SyntheticSource
from optcli.errors import UserInputError

RESOLVER = resolver_for(("x", ["batch", 16]))


def _ctx(base_dir, resolver=RESOLVER, labels=None):
    return SourceContext(resolver, base_dir, "quantization.calibration.data", labels_key=labels)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    batch=st.integers(1, 7),
    limit=st.one_of(st.none(), st.integers(1, 40)),
)
def test_rebatch_keeps_order_and_count(sizes, batch, limit):
    chunks, start = [], 0
    for n in sizes:
        chunks.append({"x": np.arange(start, start + n)})
        start += n
    out = list(rebatch(iter(chunks), batch, limit))
    expected = min(start, limit) if limit is not None else start
    flat = np.concatenate([b["x"] for b in out]) if out else np.array([])
    np.testing.assert_array_equal(flat, np.arange(expected))
    assert all(len(b["x"]) == batch for b in out[:-1])


def test_rebatch_stops_reading_at_the_limit():
    consumed = 0

    def endless():
        nonlocal consumed
        while True:
            consumed += 1
            yield {"x": np.zeros((4, 16), np.float32)}

    assert sum(len(b["x"]) for b in rebatch(endless(), 8, 20)) == 20
    assert consumed <= 6  # streamed: it never read far past what it needed


def test_npz_glob_and_labels(tmp_path):
    for i in range(3):
        np.savez(tmp_path / f"part_{i}.npz", x=np.full((5, 16), i, np.float64), labels=np.arange(5))
    batches = list(
        stream(FilesSource(path="part_*.npz"), _ctx(tmp_path, labels="labels"), batch_size=4, samples=None)
    )
    assert sum(len(b["x"]) for b in batches) == 15
    assert batches[0]["x"].dtype == np.float32  # float64 converted to the declared dtype
    assert "labels" in batches[0]


def test_npy_single_input_and_key_mapping(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((6, 16), np.float32))
    assert (
        sum(len(b["x"]) for b in stream(FilesSource(path="x.npy"), _ctx(tmp_path), batch_size=4, samples=5))
        == 5
    )
    np.savez(tmp_path / "d.npz", images=np.ones((6, 16), np.float32))
    assert (
        len(
            next(
                stream(
                    FilesSource(path="d.npz", keys={"x": "images"}),
                    _ctx(tmp_path),
                    batch_size=6,
                    samples=None,
                )
            )["x"]
        )
        == 6
    )


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.ones((4, 15), np.float32), "axis 1 is 15, the recipe declares 16"),
        (np.ones((4, 16, 1), np.float32), "has 3 dimensions"),
        (np.ones((4, 16), np.complex64), "cannot be converted safely"),
    ],
)
def test_bad_arrays_name_the_field(tmp_path, array, message):
    np.savez(tmp_path / "bad.npz", x=array)
    with pytest.raises(UserInputError, match=message) as info:
        list(stream(FilesSource(path="bad.npz"), _ctx(tmp_path), batch_size=2, samples=None))
    assert "quantization.calibration.data" in str(info.value)


def test_missing_files_and_keys(tmp_path):
    with pytest.raises(UserInputError, match="no file matches"):
        list(stream(FilesSource(path="nope/*.npz"), _ctx(tmp_path), batch_size=2, samples=None))
    np.savez(tmp_path / "k.npz", y=np.ones((2, 16)))
    with pytest.raises(UserInputError, match="no 'x' for input 'x'"):
        list(stream(FilesSource(path="k.npz"), _ctx(tmp_path), batch_size=2, samples=None))


def test_callable_source(model_dir):
    source = CallableSource(callable="models.py:batches", kwargs={"n": 3, "size": 5})
    assert sum(len(b["x"]) for b in stream(source, _ctx(model_dir), batch_size=4, samples=None)) == 15
    with pytest.raises(UserInputError, match="has no attribute 'nope'"):
        list(stream(CallableSource(callable="models.py:nope"), _ctx(model_dir), batch_size=4, samples=None))


def test_synthetic_is_seeded_and_respects_int_ranges(tmp_path):
    resolver = resolver_for(
        ("ids", ["batch", 8]), ("mask", ["batch", 8]), dtypes={"ids": "int64", "mask": "int64"}
    )
    source = SyntheticSource(seed=3, int_ranges={"ids": (5, 9)})
    first = next(stream(source, _ctx(tmp_path, resolver), batch_size=16, samples=16))
    again = next(stream(source, _ctx(tmp_path, resolver), batch_size=16, samples=16))
    np.testing.assert_array_equal(first["ids"], again["ids"])
    assert first["ids"].min() >= 5 and first["ids"].max() < 9
    assert (first["mask"] == 1).all()


def test_image_folder_with_preprocessing_and_folder_labels(tmp_path):
    image = pytest.importorskip("PIL.Image")
    from optcli.calibration.images import ImagesSource

    for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            image.new("RGB", (40 + i, 30), color).save(tmp_path / "imgs" / label / f"{i}.png")
    resolver = resolver_for(("pixels", ["batch", 3, 16, 16]))
    source = ImagesSource(
        path="imgs",
        resize=20,
        crop=16,
        mean=[0.5, 0.5, 0.5],
        std=[0.5, 0.5, 0.5],
        labels_from_folders=True,
        chunk=4,
    )
    batches = list(stream(source, _ctx(tmp_path, resolver, labels="labels"), batch_size=6, samples=None))
    (batch,) = batches
    assert batch["pixels"].shape == (6, 3, 16, 16)
    np.testing.assert_array_equal(batch["labels"], [0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(
        batch["pixels"][0, :, 8, 8], [1.0, -1.0, -1.0], atol=1e-5
    )  # red -> (1, -1, -1)


def test_image_folder_errors(tmp_path):
    from optcli.calibration.images import ImagesSource

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no images"):
        list(stream(ImagesSource(path="empty"), _ctx(tmp_path), batch_size=2, samples=None))


def test_variable_length_batches_that_cannot_be_joined_name_the_shapes():
    source = iter([{"ids": np.ones((1, 3), np.int64)}, {"ids": np.ones((1, 5), np.int64)}])
    with pytest.raises(UserInputError, match="per-sample shapes differ"):
        list(rebatch(source, 2, None))
