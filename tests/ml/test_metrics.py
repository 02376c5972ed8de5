"""MetricStorage: every kind round-trips on every backend, buffering, crashes, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from holdall import DataStorage, JsonStorageHandler, MemoryStorage, OptStorage
from holdall.errors import (
    ClosedStorageError,
    CorruptedFileError,
    EpochNotFoundError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    ReadOnlyStorageError,
    UnsupportedTypeError,
)
from holdall.ml import MetricStorage

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _push_all(metrics: MetricStorage) -> None:
    for epoch in range(5):
        metrics.push_trend_metric("train/loss", epoch, 1.0 / (epoch + 1))
        metrics.push_trend_metric("lr", epoch, 10.0**-epoch)
        metrics.push_category_metric("per_class_iou", epoch, ["hole", "slot", "stock"],
                                     [0.1 * epoch, 0.2, 0.3])  # fmt: skip
        metrics.push_matrix_metric("confusion", epoch, np.eye(3, dtype=np.int64) * epoch)
    metrics.push_category_metric("importance", 0, [3, 1], np.array([0.5, 0.25], np.float32))
    metrics.push_predictions("pred", 7, np.arange(4.0))
    metrics.push_predictions("pred", "part_b", {"logits": np.ones((2, 2)), "label": "b"})


def _check_all(metrics: MetricStorage) -> None:
    loss = metrics.pull_trend_metric("train/loss")
    assert loss.epochs.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(loss.values, [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert metrics.pull_trend_metric("lr").values[-1] == pytest.approx(1e-4)
    categories, values = metrics.pull_category_metric("per_class_iou", 3)
    assert categories == ["hole", "slot", "stock"]
    assert values == pytest.approx([0.3, 0.2, 0.3])
    assert metrics.pull_category_metric("importance", 0) == ([3, 1], [0.5, 0.25])
    matrix = metrics.pull_matrix_metric("confusion", 2)
    assert matrix.dtype == np.int64
    assert matrix.tolist() == (np.eye(3) * 2).tolist()
    assert metrics.list_epochs("confusion") == [0, 1, 2, 3, 4]
    assert metrics.list_data_ids("pred") == [7, "part_b"]
    assert metrics.pull_data("pred", 7).tolist() == [0, 1, 2, 3]
    other = metrics.pull_data("pred", "part_b")
    assert other["label"] == "b"
    assert other["logits"].shape == (2, 2)
    assert metrics.list_metrics() == sorted(
        ["train/loss", "lr", "per_class_iou", "importance", "confusion", "pred"]
    )
    assert metrics.list_metrics("matrix") == ["confusion"]


def _reopen_memory(tmp_path: Path) -> tuple[DataStorage, Callable[[MetricStorage], DataStorage]]:
    store = MemoryStorage()

    def reopen(metrics: MetricStorage) -> DataStorage:
        metrics.flush()
        return store

    return store, reopen


def _reopen_json(tmp_path: Path) -> tuple[DataStorage, Callable[[MetricStorage], DataStorage]]:
    def reopen(metrics: MetricStorage) -> DataStorage:
        metrics.close()
        return JsonStorageHandler(tmp_path / "m_json")

    return JsonStorageHandler(tmp_path / "m_json"), reopen


def _reopen_dir(tmp_path: Path) -> tuple[DataStorage, Callable[[MetricStorage], DataStorage]]:
    def reopen(metrics: MetricStorage) -> DataStorage:
        metrics.close()
        return OptStorage(tmp_path / "m.zarr")

    return OptStorage(tmp_path / "m.zarr"), reopen


def _reopen_archive(tmp_path: Path) -> tuple[DataStorage, Callable[[MetricStorage], DataStorage]]:
    def reopen(metrics: MetricStorage) -> DataStorage:
        metrics.flush()
        metrics.get_storage().compress_store()
        metrics.close()
        return OptStorage(tmp_path / "m.zarr")

    return OptStorage(tmp_path / "m.zarr"), reopen


@pytest.mark.parametrize("backend", [_reopen_memory, _reopen_json, _reopen_dir, _reopen_archive])
def test_every_metric_kind_round_trips(tmp_path: Path, backend: Callable[..., tuple]) -> None:
    store, reopen = backend(tmp_path)
    metrics = MetricStorage(store, flush_every=7)  # several segments per metric
    _push_all(metrics)
    _check_all(metrics)  # buffered and stored points together
    again = MetricStorage(reopen(metrics))
    _check_all(again)
    again.close()


def test_pushes_wait_in_memory_until_flush(tmp_path: Path) -> None:
    store = OptStorage(tmp_path / "m.zarr")
    metrics = MetricStorage(store)
    metrics.push_trend_metric("loss", 0, 2.0)
    assert "metrics" not in store  # nothing written yet
    assert metrics.pull_trend_metric("loss").values.tolist() == [2.0]  # but readable
    metrics.flush()
    assert "metrics" in store
    metrics.flush()  # nothing buffered: a no-op
    metrics.close()
    metrics.close()
    with pytest.raises(ClosedStorageError):
        metrics.push_trend_metric("loss", 1, 1.0)
    with pytest.raises(ClosedStorageError):
        metrics.pull_trend_metric("loss")
    with pytest.raises(ClosedStorageError):
        metrics.flush()


def test_latest_push_of_an_epoch_wins_across_flushes() -> None:
    metrics = MetricStorage(MemoryStorage())
    for epoch in range(4):
        metrics.push_trend_metric("loss", epoch, float(epoch))
    metrics.push_matrix_metric("cm", 1, [[1, 0], [0, 1]])
    metrics.flush()
    metrics.push_trend_metric("loss", 2, 20.0)  # resumed from a checkpoint at epoch 2
    metrics.push_matrix_metric("cm", 1, [[5, 5], [5, 5]])
    assert metrics.pull_trend_metric("loss").values.tolist() == [0.0, 1.0, 20.0, 3.0]
    assert metrics.pull_matrix_metric("cm", 1).tolist() == [[5, 5], [5, 5]]
    metrics.flush()
    assert metrics.pull_trend_metric("loss").values.tolist() == [0.0, 1.0, 20.0, 3.0]
    assert metrics.pull_matrix_metric("cm", 1).tolist() == [[5, 5], [5, 5]]


def test_matrices_of_different_shapes_and_category_lists_change_per_epoch() -> None:
    metrics = MetricStorage(MemoryStorage())
    metrics.push_matrix_metric("corr", 0, np.ones((2, 2)))
    metrics.push_matrix_metric("corr", 1, np.ones((3, 3)))
    metrics.push_category_metric("acc", 0, ["a"], [1.0])
    metrics.push_category_metric("acc", 1, ["a", "b"], [1.0, 0.5])
    metrics.flush()
    assert metrics.pull_matrix_metric("corr", 1).shape == (3, 3)
    assert metrics.pull_category_metric("acc", 1) == (["a", "b"], [1.0, 0.5])
    assert metrics.pull_category_metric("acc", 0) == (["a"], [1.0])


def test_unknown_names_epochs_and_ids_are_clear_errors() -> None:
    metrics = MetricStorage(MemoryStorage())
    metrics.push_matrix_metric("cm", 3, np.eye(2))
    metrics.push_category_metric("acc", 1, [0], [1.0])
    metrics.push_predictions("pred", 1, np.zeros(2))
    metrics.flush()
    with pytest.raises(KeyNotFoundError, match=r"no metric 'nope'.*\['acc', 'cm', 'pred'\]"):
        metrics.pull_trend_metric("nope")
    with pytest.raises(EpochNotFoundError, match=r"'cm' has no epoch 4; its epochs: \[3\]"):
        metrics.pull_matrix_metric("cm", 4)
    with pytest.raises(ValueError, match="no epoch 2"):  # the seed's ValueError
        metrics.pull_category_metric("acc", 2)
    with pytest.raises(KeyError):
        metrics.pull_category_metric("acc", 2)
    with pytest.raises(KeyNotFoundError, match="is a matrix metric, not a trend one"):
        metrics.pull_trend_metric("cm")
    with pytest.raises(KeyNotFoundError, match="no data_id 2"):
        metrics.pull_data("pred", 2)
    with pytest.raises(InvalidValueError, match="list_data_ids"):
        metrics.list_epochs("pred")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: m.push_trend_metric("", 0, 1.0), InvalidKeyError, "non-empty"),
        (lambda m: m.push_trend_metric("a\x00b", 0, 1.0), InvalidKeyError, "NUL"),
        (lambda m: m.push_trend_metric("x" * 300, 0, 1.0), InvalidKeyError, "shorter name"),
        (lambda m: m.push_trend_metric(["l"], 0, 1.0), InvalidKeyError, "must be a str"),
        (lambda m: m.push_trend_metric("l", 1.5, 1.0), InvalidValueError, "epoch must be an int"),
        (lambda m: m.push_trend_metric("l", True, 1.0), InvalidValueError, "epoch must be an int"),
        (lambda m: m.push_trend_metric("l", 0, "1"), InvalidValueError, "real number"),
        (lambda m: m.push_trend_metric("l", 0, float("nan")), InvalidValueError, "allow_nan"),
        (lambda m: m.push_matrix_metric("m", 0, [1, 2]), InvalidValueError, "2-D numeric"),
        (lambda m: m.push_matrix_metric("m", 0, [["a"]]), InvalidValueError, "2-D numeric"),
        (lambda m: m.push_matrix_metric("m", 0, [[np.nan]]), InvalidValueError, "NaN"),
        (lambda m: m.push_category_metric("c", 0, ["a", "b"], [1.0]), InvalidValueError,
         "2 categories but 1 values"),
        (lambda m: m.push_category_metric("c", 0, ["a", "a"], [1.0, 2.0]), InvalidValueError,
         "repeat"),
        (lambda m: m.push_category_metric("c", 0, [], []), InvalidValueError, "non-empty"),
        (lambda m: m.push_category_metric("c", 0, ["a"], ["x"]), InvalidValueError, "numbers"),
        (lambda m: m.push_predictions("p", 1.5, [1]), InvalidKeyError, "int or a str"),
        (lambda m: m.push_predictions("p", 1, object()), UnsupportedTypeError, "p/1"),
        (lambda m: m.push_matrix_metric("taken", 0, [[1]]), InvalidValueError,
         "is a trend metric"),
    ],
)  # fmt: skip
def test_bad_pushes_are_refused_at_the_call(
    tmp_path: Path, call: Callable[[MetricStorage], None], error: type[Exception], message: str
) -> None:
    metrics = MetricStorage(OptStorage(tmp_path / "m.zarr"))  # refuses NaN by default
    metrics.push_trend_metric("taken", 0, 1.0)
    with pytest.raises(error, match=message):
        call(metrics)
    metrics.close()
    assert MetricStorage(OptStorage(tmp_path / "m.zarr")).list_metrics() == ["taken"]


def test_nan_is_kept_where_the_store_allows_it(tmp_path: Path) -> None:
    metrics = MetricStorage(OptStorage(tmp_path / "m.zarr", allow_nan=True))
    metrics.push_trend_metric("loss", 0, float("nan"))
    metrics.push_trend_metric("loss", 1, float("inf"))
    metrics.close()
    again = MetricStorage(OptStorage(tmp_path / "m.zarr", allow_nan=True))
    values = again.pull_trend_metric("loss").values
    assert np.isnan(values[0])
    assert np.isinf(values[1])
    again.close()


def test_read_only_archive_can_be_pulled_not_pushed(tmp_path: Path) -> None:
    metrics = MetricStorage(OptStorage(tmp_path / "m.zarr"))
    metrics.push_trend_metric("loss", 0, 1.0)
    metrics.flush()
    metrics.get_storage().compress_store()
    metrics.close()
    archive = MetricStorage(OptStorage(tmp_path / "m.zarr"))
    assert archive.pull_trend_metric("loss").values.tolist() == [1.0]
    with pytest.raises(ReadOnlyStorageError):
        archive.push_trend_metric("loss", 1, 1.0)
    archive.close()
    with pytest.raises(UnsupportedTypeError):
        MetricStorage({})  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="flush_every"):
        MetricStorage(MemoryStorage(), flush_every=0)


def test_auto_flush_bounds_what_is_buffered() -> None:
    store = MemoryStorage()
    metrics = MetricStorage(store, flush_every=1000, flush_bytes=1 << 12)
    metrics.push_matrix_metric("big", 0, np.zeros((30, 30)))  # 7200 bytes > 4 KiB
    assert "metrics" in store
    for step in range(2500):
        metrics.push_trend_metric("loss", step, 1.0)
    assert store.load_metadata("metrics_index")["trend"]["loss"]["segments"] == 2
    assert len(metrics.pull_trend_metric("loss").epochs) == 2500


def _run_child(tmp_path: Path, body: str) -> subprocess.CompletedProcess[bytes]:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {SRC!r})
        from holdall import OptStorage
        from holdall.ml import MetricStorage
        metrics = MetricStorage(OptStorage({str(tmp_path / "run.zarr")!r}))
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)


@pytest.mark.filterwarnings("ignore::holdall.errors.HoldallWarning")  # "not closed cleanly"
def test_sigkill_after_flush_loses_only_what_came_after(tmp_path: Path) -> None:
    done = _run_child(tmp_path, """
        for epoch in range(50):
            metrics.push_trend_metric("loss", epoch, float(epoch))
        metrics.push_matrix_metric("cm", 49, [[3, 1], [0, 4]])
        metrics.flush()
        for epoch in range(50, 60):
            metrics.push_trend_metric("loss", epoch, float(epoch))
        os.kill(os.getpid(), signal.SIGKILL)
        """)  # fmt: skip
    assert done.returncode == -signal.SIGKILL
    metrics = MetricStorage(OptStorage(tmp_path / "run.zarr"))
    assert metrics.pull_trend_metric("loss").epochs.tolist() == list(range(50))
    assert metrics.pull_matrix_metric("cm", 49).tolist() == [[3, 1], [0, 4]]
    metrics.close()


def test_exit_without_close_flushes_at_interpreter_exit(tmp_path: Path) -> None:
    done = _run_child(tmp_path, """
        for epoch in range(20):
            metrics.push_trend_metric("loss", epoch, float(epoch))
        metrics.push_category_metric("acc", 19, ["a", "b"], [0.5, 0.75])
        kept = metrics  # still referenced at exit: the atexit hook must flush it
        """)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    metrics = MetricStorage(OptStorage(tmp_path / "run.zarr"))
    assert metrics.pull_trend_metric("loss").epochs.tolist() == list(range(20))
    assert metrics.pull_category_metric("acc", 19) == (["a", "b"], [0.5, 0.75])
    metrics.close()


def test_garbage_collected_storage_flushes(tmp_path: Path) -> None:
    done = _run_child(tmp_path, """
        metrics.push_trend_metric("loss", 0, 1.5)
        del metrics
        import gc; gc.collect()
        os.kill(os.getpid(), signal.SIGKILL)  # no atexit: only __del__ can have flushed
        """)  # fmt: skip
    assert done.returncode == -signal.SIGKILL
    metrics = MetricStorage(OptStorage(tmp_path / "run.zarr"))
    assert metrics.pull_trend_metric("loss").values.tolist() == [1.5]
    metrics.close()
    assert os.path.isdir(tmp_path / "run.zarr")


def test_a_damaged_index_is_reported() -> None:
    store = MemoryStorage()
    store.save_metadata("metrics_index", [1, 2])
    with pytest.raises(CorruptedFileError, match="not a metrics index"):
        MetricStorage(store)
    store.save_metadata("metrics_index", {"trend": {"loss": {"segments": 1}}})
    with pytest.raises(CorruptedFileError, match="the trend entry 'loss'"):
        MetricStorage(store)


def test_a_failed_flush_keeps_the_points_buffered(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStorage()
    metrics = MetricStorage(store)
    metrics.push_trend_metric("loss", 0, 1.0)
    metrics.push_matrix_metric("cm", 0, [[1]])

    def disk_full(key: str, value: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(store, "save_metadata", disk_full)
    with pytest.raises(OSError, match="No space"):
        metrics.flush()
    monkeypatch.undo()
    metrics.push_trend_metric("loss", 1, 2.0)  # pushed after the failure
    metrics.flush()
    again = MetricStorage(store)
    assert again.pull_trend_metric("loss").values.tolist() == [1.0, 2.0]
    assert again.pull_matrix_metric("cm", 0).tolist() == [[1]]


def test_pushes_from_several_threads_all_arrive() -> None:
    metrics = MetricStorage(MemoryStorage(), flush_every=500)

    def log(thread: int) -> None:
        for step in range(2000):
            metrics.push_trend_metric(f"loss_{thread % 2}", thread * 10_000 + step, float(step))

    workers = [threading.Thread(target=log, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    metrics.flush()
    assert len(metrics.pull_trend_metric("loss_0").epochs) == 4000
    assert len(metrics.pull_trend_metric("loss_1").epochs) == 4000


@pytest.mark.filterwarnings("error::zarr.errors.ZarrUserWarning")  # core codecs only
def test_zarr_python_reads_the_segments(tmp_path: Path) -> None:
    import zarr

    metrics = MetricStorage(OptStorage(tmp_path / "m.zarr"))
    for epoch in range(3):
        metrics.push_trend_metric("val/loss", epoch, 0.5 * epoch)
    metrics.push_matrix_metric("cm", 2, [[4, 1], [0, 5]])
    metrics.close()
    group = zarr.open_group(str(tmp_path / "m.zarr"), mode="r")
    assert group["metrics/trend/val%2Floss/000000/value"][:].tolist() == [0.0, 0.5, 1.0]
    assert group["metrics/trend/val%2Floss/000000/epoch"][:].tolist() == [0, 1, 2]
    assert group["metrics/matrix/cm/000000/values"][:].tolist() == [[[4, 1], [0, 5]]]


def test_hostile_names_stay_inside_the_store(tmp_path: Path) -> None:
    metrics = MetricStorage(OptStorage(tmp_path / "m.zarr"))
    names = ["../escape", "/abs", "..", "a/b/../c", "naïve loss %2F"]
    for number, name in enumerate(names):
        metrics.push_trend_metric(name, 0, float(number))
    metrics.push_predictions("p", "../../etc/passwd", np.zeros(1))
    metrics.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files_summary", "m.zarr"]
    again = MetricStorage(OptStorage(tmp_path / "m.zarr"))
    for number, name in enumerate(names):
        assert again.pull_trend_metric(name).values.tolist() == [float(number)]
    assert again.list_data_ids("p") == ["../../etc/passwd"]
    again.close()
