"""The model store: versions, the CURRENT pointer, its change signature, pruning, rollback."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from monitor.errors import ModelError
from monitor.models import LoadedModel, TorchScorer, TrainOptions, save_artifact, train_model
from monitor.models import store as model_store
from monitor.models.store import CURRENT_FILE, point_current, publish, resolve, signature, use, versions

from .seasonal_data import WINDOW, history


@pytest.fixture(scope="module")
def trained() -> LoadedModel:
    options = TrainOptions(kind="dense", window=WINDOW, hidden=8, latent=4, epochs=1)
    model, metadata = train_model(history(100), ["value"], options, progress=False)
    return LoadedModel(model, metadata)


def publish_as(trained: LoadedModel, store: Path, version: str) -> Path:
    return publish(trained.module, dataclasses.replace(trained.metadata, version=version), store)


def test_publish_writes_a_version_and_points_current_at_it(trained: LoadedModel, tmp_path: Path) -> None:
    store = tmp_path / "store"
    target = publish(trained.module, trained.metadata, store, {"report.md": b"# hi\n"})

    assert target == store / trained.metadata.version
    assert (store / CURRENT_FILE).read_text() == trained.metadata.version + "\n"
    assert resolve(store) == target
    assert (target / "report.md").read_bytes() == b"# hi\n"
    assert TorchScorer.from_path(store).version == trained.metadata.version
    assert sorted(p.name for p in store.iterdir()) == sorted([CURRENT_FILE, trained.metadata.version])


def test_the_signature_changes_with_every_published_version(trained: LoadedModel, tmp_path: Path) -> None:
    store = tmp_path / "store"
    publish_as(trained, store, "dense-1")
    first = signature(store)
    assert signature(store) == first
    publish_as(trained, store, "dense-2")
    assert signature(store) != first


def test_old_versions_are_pruned_but_never_the_current_one(
    trained: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_store, "KEEP_VERSIONS", 2)
    store = tmp_path / "store"
    for i in range(5):
        publish_as(trained, store, f"dense-{i}")
    assert versions(store) == ["dense-2", "dense-3", "dense-4"]
    assert resolve(store).name == "dense-4"


def test_use_rolls_back_only_to_a_version_that_loads(trained: LoadedModel, tmp_path: Path) -> None:
    store = tmp_path / "store"
    publish_as(trained, store, "dense-old")
    publish_as(trained, store, "dense-new")
    (store / "dense-broken").mkdir()

    assert use(store, "dense-old").version == "dense-old"
    assert resolve(store).name == "dense-old"
    with pytest.raises(ModelError, match="dense-broken"):
        use(store, "dense-broken")
    assert resolve(store).name == "dense-old"
    with pytest.raises(ModelError, match="not a version name"):
        use(store, "../elsewhere")


def test_a_single_artifact_directory_still_loads_and_current_takes_precedence(
    trained: LoadedModel, tmp_path: Path
) -> None:
    path = save_artifact(trained.module, trained.metadata, tmp_path / "plain")
    assert resolve(path) == path
    publish_as(trained, path, "dense-next")
    assert resolve(path) == path / "dense-next"


@pytest.mark.parametrize(
    ("content", "complaint"), [(None, "train one with `monitor train --out"), ("../x", "must name")]
)
def test_an_unusable_store_is_a_model_error_naming_it(tmp_path: Path, content: str | None, complaint: str) -> None:
    tmp_path.joinpath("store").mkdir()
    if content is not None:
        point_current(tmp_path / "store", "placeholder")
        (tmp_path / "store" / CURRENT_FILE).write_text(content)
    with pytest.raises(ModelError, match=complaint) as raised:
        resolve(tmp_path / "store")
    assert str(tmp_path / "store") in str(raised.value)
