"""Model archives: export streams the published files; import refuses anything unsafe."""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile

import pytest
from sqlalchemy import func, select

from shared.errors import InvalidInput, NotFound
from shared.model_store import archive, checks, export, layout
from shared.model_store.archive import check_archive, import_archive
from shared.model_store.export import iter_export_zip
from shared.models import DeploymentEvent, FineTuningRun
from tests.factories import make_category, make_run
from tests.model_files import archive_files, write_adapter_directory, zip_bytes

LABELS = ["cards", "loans"]


@pytest.fixture
def categories(session):
    for name in [*LABELS, "transfers"]:
        make_category(session, name=name, description=f"questions about {name}")
    session.commit()


def _symlink_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in archive_files(LABELS).items():
            archive.writestr(name, data)
        link = zipfile.ZipInfo("README.md.link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def _symlink_in_place_of_a_file() -> bytes:
    buffer = io.BytesIO()
    files = archive_files(LABELS)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            archive.writestr(name, files[name])
        link = zipfile.ZipInfo("README.md")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def _with(**changes: bytes | None) -> bytes:
    files = archive_files(LABELS)
    for name, data in changes.items():
        name = name.replace("__", ".")
        if data is None:
            files.pop(name)
        else:
            files[name] = data
    return zip_bytes(files)


def _adapter_config(**manifest_changes) -> bytes:
    config = json.loads(archive_files(LABELS)["adapter_config.json"])
    config["sortloop"].update(manifest_changes)
    return json.dumps(config).encode()


def _zip_bomb(megabytes: int) -> bytes:
    files = archive_files(LABELS)
    files["training_data.json"] = b"[" + b" " * (megabytes * 1024 * 1024) + b"]"
    return zip_bytes(files)


def _too_many_members() -> bytes:
    files = archive_files(LABELS)
    files.update({f"extra_{n}.json": b"{}" for n in range(20)})
    return zip_bytes(files)


UNSAFE_ARCHIVES = {
    "zip slip": (lambda: zip_bytes({**archive_files(LABELS), "../evil.json": b"{}"}), "outside"),
    "absolute path": (lambda: zip_bytes({**archive_files(LABELS), "/tmp/evil.json": b"{}"}), "absolute"),
    "symlink member": (_symlink_archive, "symbolic link"),
    "symlink named like a member": (_symlink_in_place_of_a_file, "symbolic link"),
    "pickle weights": (lambda: zip_bytes({**archive_files(LABELS), "adapter_model.bin": b"\x80\x04."}), "pickle"),
    "pickle instead of safetensors": (
        lambda: _with(adapter_model__safetensors=None, pytorch_model__bin=b"\x80\x04."),
        "pickle",
    ),
    "missing adapter config": (lambda: _with(adapter_config__json=None), "missing adapter_config.json"),
    "missing weights": (lambda: _with(adapter_model__safetensors=None), "missing adapter_model"),
    "garbage bytes": (lambda: b"this is not a zip file at all" * 10, "not a ZIP"),
    "empty file": (lambda: b"", "empty"),
    "zip bomb (compression ratio)": (lambda: _zip_bomb(20), "zip bomb"),
    "zip bomb (over the size cap)": (lambda: _zip_bomb(60), "zip bomb"),
    "too many members": (_too_many_members, "members"),
    "unexpected file name": (lambda: zip_bytes({**archive_files(LABELS), "run.sh": b"rm -rf /"}), "unexpected member"),
    "nested folder": (
        lambda: zip_bytes({f"run_3/{name}": data for name, data in archive_files(LABELS).items()}),
        "unexpected member",
    ),
    "weights that are not safetensors": (
        lambda: _with(adapter_model__safetensors=b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!"),
        "safetensors",
    ),
    "truncated safetensors": (
        lambda: _with(adapter_model__safetensors=archive_files(LABELS)["adapter_model.safetensors"][:-7]),
        "safetensors",
    ),
    "config that is not JSON": (lambda: _with(adapter_config__json=b"{not json"), "not valid JSON"),
    "config without a manifest": (lambda: _with(adapter_config__json=b'{"r": 8}'), "sortloop"),
    "wrong base model": (lambda: _with(adapter_config__json=_adapter_config(base_model="bert-base-uncased")), "base model"),
    "wrong model kind": (lambda: _with(adapter_config__json=_adapter_config(kind="nli")), "'nli' model"),
    "incompatible categories": (
        lambda: _with(adapter_config__json=_adapter_config(labels=["cards", "mortgages"])),
        "mortgages",
    ),
    "metrics that are not JSON": (lambda: _with(metrics__json=b"\xff\xfe"), "metrics.json"),
}  # fmt: skip


def _nothing_written(session, config) -> None:
    assert session.scalar(select(func.count()).select_from(FineTuningRun)) == 0
    assert session.scalar(select(func.count()).select_from(DeploymentEvent)) == 0
    root = layout.finetuned_root(config.models_dir)
    assert not root.exists() or list(root.iterdir()) == []


@pytest.mark.parametrize("case", list(UNSAFE_ARCHIVES), ids=list(UNSAFE_ARCHIVES))
def test_unsafe_or_incompatible_archive_is_refused_and_nothing_is_written(
    case, session, config, categories
) -> None:
    build, reason = UNSAFE_ARCHIVES[case]
    with pytest.raises(InvalidInput, match="archive refused") as refused:
        import_archive(session, config, io.BytesIO(build()), actor="admin", trial_load=None)
    assert reason.lower() in str(refused.value).lower()
    _nothing_written(session, config)


def test_archive_over_the_size_cap_is_refused_before_unzipping(
    session, config, categories, monkeypatch
) -> None:
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", 1000)
    with pytest.raises(InvalidInput, match="larger than"):
        import_archive(session, config, io.BytesIO(_with()), actor="admin", trial_load=None)
    _nothing_written(session, config)


def _lie_about_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite a member's declared uncompressed size in both ZIP headers."""
    patched = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        offset = archive.getinfo(name).header_offset
    struct.pack_into("<I", patched, offset + 22, size)
    position = patched.find(b"PK\x01\x02")
    while position != -1:
        length = struct.unpack_from("<H", patched, position + 28)[0]
        if patched[position + 46 : position + 46 + length] == name.encode():
            struct.pack_into("<I", patched, position + 24, size)
        position = patched.find(b"PK\x01\x02", position + 1)
    return bytes(patched)


def test_member_lying_about_its_size_is_refused(session, config, categories) -> None:
    files = archive_files(LABELS)
    files["training_data.json"] = b"[" + b" " * (20 * 1024 * 1024) + b"]"
    data = _lie_about_size(zip_bytes(files), "training_data.json", 100)

    with pytest.raises(InvalidInput, match="training_data.json"):
        import_archive(session, config, io.BytesIO(data), actor="admin", trial_load=None)
    _nothing_written(session, config)


def test_adapter_that_does_not_load_is_refused_and_the_staging_dir_is_removed(
    session, config, categories
) -> None:
    def failing_load(_config, _path):
        raise ValueError("adapter shape (3, 384) does not fit")

    with pytest.raises(InvalidInput, match="does not load"):
        import_archive(session, config, io.BytesIO(_with()), actor="admin", trial_load=failing_load)
    _nothing_written(session, config)


def test_valid_archive_becomes_an_imported_run_with_its_files_and_an_event(
    session, config, categories
) -> None:
    run = import_archive(
        session, config, io.BytesIO(_with()), actor="alice", filename="model.zip"
    )  # the real trial load: the adapter goes onto the packaged MiniLM

    assert run.status == "imported"
    assert run.label_set == LABELS
    assert run.results["accuracy"] == 0.9
    directory = layout.run_directory(config.models_dir, run.id)
    assert sorted(path.name for path in directory.iterdir()) == sorted(archive_files(LABELS))
    event = session.scalar(select(DeploymentEvent))
    assert (event.action, event.run_id, event.actor, event.outcome) == (
        "import",
        run.id,
        "alice",
        "ok",
    )
    leftovers = [p.name for p in layout.finetuned_root(config.models_dir).iterdir()]
    assert leftovers == [directory.name]


def test_archive_may_know_fewer_categories_than_the_installation(
    session, config, categories
) -> None:
    archive = check_archive(io.BytesIO(_with()), config, {"cards", "loans", "transfers"})
    assert archive.manifest.labels == LABELS


def test_export_streams_exactly_the_archive_files(session, config, tmp_path) -> None:
    directory = write_adapter_directory(tmp_path / "run_1", LABELS)
    (directory / "tokenizer.json").write_text("{}")

    data = b"".join(iter_export_zip(directory))

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == sorted(archive_files(LABELS))
        assert (
            archive.read("adapter_config.json") == (directory / "adapter_config.json").read_bytes()
        )


def test_export_then_import_gives_back_the_same_files(session, config, categories) -> None:
    run = make_run(session, status="completed")
    source = write_adapter_directory(layout.run_directory(config.models_dir, run.id), LABELS)
    session.commit()
    data = b"".join(
        iter_export_zip(export.exportable_run_directory(session, config.models_dir, run.id))
    )

    imported = import_archive(session, config, io.BytesIO(data), actor="admin", trial_load=None)

    copy = layout.run_directory(config.models_dir, imported.id)
    for name in archive_files(LABELS):
        assert (copy / name).read_bytes() == (source / name).read_bytes()


@pytest.mark.parametrize("status", ["failed", "training", "cancelled"])
def test_runs_without_a_model_cannot_be_exported(session, config, status) -> None:
    run = make_run(session, status=status)
    with pytest.raises(NotFound):
        export.exportable_run_directory(session, config.models_dir, run.id)


def test_safetensors_header_is_checked_without_loading_tensors() -> None:
    header = checks.parse_safetensors_header(archive_files(LABELS)["adapter_model.safetensors"])
    assert set(header) - {"__metadata__"} == {
        "sortloop_head.exemplars",
        "sortloop_head.exemplar_classes",
        "sortloop_head.logit_scale",
    }
