"""Reads offline W&B runs back, so tests can check what a component logged.

wandb 0.31 ships no Python reader for its ``.wandb`` transaction log any more, and
``wandb leet inspect --json`` costs ~0.4 s a call and flattens nested keys. The file is a
LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of
chunks, each ``crc32 (4 bytes LE) | length (2 bytes LE) | type (1 byte) | data``, where a record
is one FULL chunk or FIRST, MIDDLE..., LAST chunks and a block tail shorter than a chunk header
is zero padding. Each record is a ``wandb_internal_pb2.Record`` (the classes ship in the wandb
package, so they always match the writer). Parsing it here takes milliseconds.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest
    from wandb.proto import wandb_internal_pb2

_FILE_HEADER = struct.Struct("<4sHB")
_FILE_IDENT, _FILE_MAGIC, _FILE_VERSION = b":W&B", 0xBEE1, 0
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK_SIZE = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
# The checksum covers the chunk type byte, then the data.
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}


def use_offline_wandb(env: pytest.MonkeyPatch, root: Path) -> None:
    """Points W&B at fresh folders under ``root`` and keeps it offline (no API key).

    Args:
        env: where the variables are set (undone when its test or context ends).
        root: the folder that gets ``wandb``, ``wandb-data``, ``wandb-cache`` and ``wandb-config``.
    """
    env.delenv("WANDB_API_KEY", raising=False)
    env.setenv("WANDB_MODE", "offline")
    for var, sub in [
        ("WANDB_DIR", "wandb"),
        ("WANDB_DATA_DIR", "wandb-data"),
        ("WANDB_CACHE_DIR", "wandb-cache"),
        ("WANDB_CONFIG_DIR", "wandb-config"),
    ]:
        (root / sub).mkdir()
        env.setenv(var, str(root / sub))


@dataclass
class OfflineRun:
    """What one offline run recorded, rebuilt from its ``.wandb`` file."""

    path: Path
    run_id: str
    project: str
    job_type: str
    group: str
    name: str
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    artifacts: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    exit_code: int | None
    record_types: list[str] = field(default_factory=list)

    def table(self, key: str) -> dict[str, Any]:
        """The W&B Table last logged under ``key`` (``{"columns": [...], "data": [[...]]}``).

        Charts store theirs under ``<chart key>_table``, e.g. ``confusion_matrix_table``.
        """
        return json.loads((self.path / "files" / self.summary[key]["path"]).read_text())

    def artifact(self, name: str) -> dict[str, Any]:
        """The artifact logged under ``name`` (the last, if several); raises KeyError listing the names there are."""
        for artifact in reversed(self.artifacts):
            if artifact["name"] == name:
                return artifact
        raise KeyError(f"no artifact {name!r}; logged: {[a['name'] for a in self.artifacts]}")


def find_offline_runs(wandb_dir: Path) -> list[Path]:
    """The ``offline-run-*`` folders under ``wandb_dir``, oldest first.

    Args:
        wandb_dir: ``$WANDB_DIR`` (whose ``wandb/`` subfolder holds the runs) or that subfolder.
    """
    root = wandb_dir / "wandb" if (wandb_dir / "wandb").is_dir() else wandb_dir
    return sorted(p for p in root.glob("offline-run-*") if p.is_dir())


def read_offline_run(run_dir: Path, *, timeout: float = 5.0) -> OfflineRun:
    """Reads a run folder once its exit record is on disk.

    ``finish()`` can return before wandb-core has flushed the file (~50 ms, longer when the
    service is shared), so this polls until the exit record shows up.

    Args:
        run_dir: An ``offline-run-*`` (or ``run-*``) folder.
        timeout: Seconds to wait for the exit record.

    Raises:
        TimeoutError: No exit record within ``timeout`` (the run never finished).
        ValueError: The file is not a W&B transaction log or is corrupt.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = _read_records(run_dir) if _log_file(run_dir) else []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return _rebuild(run_dir, records)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no exit record in {run_dir} after {timeout} s")
        time.sleep(0.02)


def _log_file(run_dir: Path) -> Path | None:
    files = sorted(run_dir.glob("run-*.wandb"))
    return files[0] if files else None


def _read_records(run_dir: Path) -> list[wandb_internal_pb2.Record]:
    from wandb.proto import wandb_internal_pb2

    path = _log_file(run_dir)
    assert path is not None
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size:
        return []
    if _FILE_HEADER.unpack_from(data) != (_FILE_IDENT, _FILE_MAGIC, _FILE_VERSION):
        raise ValueError(f"{path} is not a W&B transaction log (header {data[:7]!r})")

    records = []
    pending = b""
    pos = _FILE_HEADER.size
    while True:
        block_left = _BLOCK_SIZE - pos % _BLOCK_SIZE
        if block_left < _CHUNK_HEADER.size:
            pos += block_left
        if pos + _CHUNK_HEADER.size > len(data):
            break
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        start = pos + _CHUNK_HEADER.size
        if start + length > len(data):
            break  # the writer has not flushed this chunk yet
        chunk = data[start : start + length]
        if zlib.crc32(chunk, _TYPE_CRC.get(kind, 0)) != crc:
            raise ValueError(f"{path}: bad checksum at byte {pos}")
        pos = start + length
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _rebuild(run_dir: Path, records: list[wandb_internal_pb2.Record]) -> OfflineRun:
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    run = None
    exit_code = None
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            _apply(config, run.config)
            _apply(summary, run.summary)
        elif kind == "config":
            _apply(config, record.config)
        elif kind == "summary":
            _apply(summary, record.summary)
        elif kind == "history":
            row: dict[str, Any] = {"_step": record.history.step.num}
            for item in record.history.item:
                _set(row, _key_path(item), _history_value(item))
            history.append(row)
        elif kind == "artifact":
            artifacts.append(_artifact(record.artifact))
        elif kind == "alert":
            alerts.append({"title": record.alert.title, "text": record.alert.text, "level": record.alert.level})
        elif kind == "exit":
            exit_code = record.exit.exit_code
    if run is None:
        raise ValueError(f"{run_dir}: no run record")
    config.pop("_wandb", None)  # W&B's own bookkeeping (chart specs, versions)
    return OfflineRun(
        path=run_dir,
        run_id=run.run_id,
        project=run.project,
        job_type=run.job_type,
        group=run.run_group,
        name=run.display_name,
        config=config,
        summary=summary,
        history=history,
        artifacts=artifacts,
        alerts=alerts,
        exit_code=exit_code,
        record_types=[str(r.WhichOneof("record_type")) for r in records],
    )


def _apply(target: dict[str, Any], change: Any) -> None:
    """Applies a ConfigRecord/SummaryRecord: its updates, then its removals."""
    for item in change.update:
        _set(target, _key_path(item), json.loads(item.value_json))
    for item in change.remove:
        *parents, last = _key_path(item)
        node = target
        for key in parents:
            node = node.get(key, {})
        node.pop(last, None)


def _key_path(item: Any) -> list[str]:
    return list(item.nested_key) or [item.key]


def _set(target: dict[str, Any], path: list[str], value: Any) -> None:
    *parents, last = path
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value


def _history_value(item: Any) -> Any:
    # Legacy JSON form by default; the typed form when x_history_value_encoding asks for it.
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value")
    if kind == "json":
        return json.loads(item.json)
    return None if kind in (None, "none") else getattr(item, kind)


def _artifact(record: Any) -> dict[str, Any]:
    return {
        "name": record.name,
        "type": record.type,
        "metadata": json.loads(record.metadata) if record.metadata else {},
        "aliases": list(record.aliases),
        "tags": list(record.tags),
        "digest": record.digest,
        "entries": [
            {
                "path": entry.path,
                "digest": entry.digest,
                "ref": entry.ref or None,
                "size": entry.size,
                "local_path": entry.local_path or None,
            }
            for entry in record.manifest.contents
        ],
    }
