"""A local, content-addressed model registry (requirement 2) with a crash-safe champion pointer (11).

Layout under the root (e.g. ``PROJECT/.mlspec/registry``)::

    <model>/versions/<version>/model.ubj       xgboost UBJSON bytes
    <model>/versions/<version>/metadata.json   spec hash, compiled spec, data fingerprint, features,
                                               encoding, params, metrics, gate verdict, versions, ...
    <model>/versions/<version>/reference.json  drift reference statistics
    <model>/champion.json                      {"current": version | null, "history": [...]}

A version id is the first 12 hex digits of sha256(model bytes, spec hash, data fingerprint), so the
same content registers once.  Version folders are written into a temporary folder and renamed into
place, and never change afterwards.  The champion pointer is one small file replaced atomically
(temp file in the same folder, fsync, ``os.replace``, fsync of the folder): a crash at any instant
leaves the old or the new pointer, never a torn one.  Pointer updates take an advisory file lock so
two concurrent promotions cannot lose each other's history.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlspec.runtime.gate import GateVerdict

if TYPE_CHECKING:
    import xgboost as xgb

    from mlspec.runtime.encode import FeatureEncoding
    from mlspec.runtime.reference import ReferenceStats
    from mlspec.runtime.train import TrainResult

try:  # POSIX advisory locks; elsewhere pointer updates rely on os.replace alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["Registry", "RegistryError", "VersionInfo", "library_versions"]

MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.json"
CHAMPION_FILE = "champion.json"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
_VERSION = re.compile(r"^[0-9a-f]{12}$")
_LIBRARIES = ("xgboost", "numpy", "polars", "duckdb", "scikit-learn", "scipy", "pyarrow", "mlspec")
Status = Literal["candidate", "rejected"]


class RegistryError(Exception):
    """A registry request that cannot be honoured, phrased for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class VersionInfo:
    """One registered version: identity, status, headline facts and the full metadata."""

    model_name: str
    version: str
    status: str  # "candidate" | "rejected", as registered; champion-ness lives in the pointer
    created_at: str
    spec_hash: str
    data_fingerprint: str
    metrics: dict[str, float]
    gate_passed: bool
    path: Path
    metadata: dict[str, Any]


def library_versions() -> dict[str, str]:
    """Versions of python and the libraries that shape a model, recorded with every version."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class Registry:
    """Model versions and champion pointers under one root folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # ---- writing versions ----------------------------------------------------------------

    def register(self, model_name: str, result: TrainResult, *, spec_hash: str, compiled_spec: Mapping[str, Any],
                 status: Status, gate: GateVerdict) -> VersionInfo:
        """Store a trained model; the same model bytes + spec hash + data return the existing version."""
        _check_name(model_name)
        if status not in ("candidate", "rejected"):
            raise RegistryError(f"status must be `candidate` or `rejected`, not `{status}`")
        version = version_id(result.model_bytes, spec_hash, result.data_fingerprint)
        final = self._versions_dir(model_name) / version
        if (final / METADATA_FILE).exists():
            return self.get(model_name, version)
        meta = _metadata(model_name, version, result, spec_hash, compiled_spec, status, gate)
        self._versions_dir(model_name).mkdir(parents=True, exist_ok=True)
        self._sweep_temp_dirs(model_name)
        tmp = self._model_dir(model_name) / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _write_file(tmp / MODEL_FILE, result.model_bytes)
            _write_file(tmp / REFERENCE_FILE, result.reference.to_json().encode())
            _write_file(tmp / METADATA_FILE, _dumps(meta).encode())
            _fsync_dir(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if (final / METADATA_FILE).exists():  # a concurrent writer registered the same content
                    return self.get(model_name, version)
                raise
            _fsync_dir(final.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.get(model_name, version)

    # ---- reading versions ----------------------------------------------------------------

    def models(self) -> list[str]:
        """Names of models with at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir() and _NAME.match(p.name))

    def versions(self, model_name: str) -> list[VersionInfo]:
        """All versions of a model, oldest first."""
        _check_name(model_name)
        vdir = self._versions_dir(model_name)
        if not vdir.is_dir():
            return []
        infos = [self._read(model_name, p.name) for p in vdir.iterdir()
                 if _VERSION.match(p.name) and (p / METADATA_FILE).is_file()]
        return sorted(infos, key=lambda i: (i.created_at, i.version))

    def get(self, model_name: str, version: str | None = None) -> VersionInfo:
        """A version by id or unique id prefix; the champion when `version` is None."""
        return self._read(model_name, self.resolve(model_name, version))

    def resolve(self, model_name: str, version: str | None = None) -> str:
        """The full version id for an id, a unique prefix, or None (the champion)."""
        _check_name(model_name)
        known = self._version_ids(model_name)
        if not known:
            others = self.models()
            hint = f"; known models: {', '.join(others)}" if others else ""
            close = difflib.get_close_matches(model_name, others, n=1)
            if close:
                hint = f"; did you mean `{close[0]}`?"
            raise RegistryError(f"model `{model_name}` has no registered versions{hint}")
        if version is None:
            current = self.champion(model_name)
            if current is None:
                raise RegistryError(f"model `{model_name}` has no champion yet; promote a version first "
                                    f"(versions: {', '.join(self._by_age(model_name)[-5:])})")
            return current
        if version in known:
            return version
        matches = [v for v in known if v.startswith(version.lower())] if version else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise RegistryError(f"version `{version}` of `{model_name}` is ambiguous: it starts "
                                f"{', '.join(sorted(matches))}")
        close = difflib.get_close_matches(version, known, n=3, cutoff=0.5)
        hint = (f"; did you mean {', '.join(f'`{c}`' for c in close)}?" if close
                else f"; known versions: {', '.join(self._by_age(model_name)[-5:])}")
        raise RegistryError(f"model `{model_name}` has no version `{version}`{hint}")

    def load_model_bytes(self, model_name: str, version: str | None = None) -> bytes:
        """The model file, checked against the sha256 recorded at registration."""
        info = self.get(model_name, version)
        data = (info.path / MODEL_FILE).read_bytes()
        if hashlib.sha256(data).hexdigest() != info.metadata.get("model_sha256"):
            raise RegistryError(f"model file of `{model_name}` version {info.version} does not match its "
                                f"recorded checksum; the registry folder was modified")
        return data

    def load_booster(self, model_name: str, version: str | None = None) -> xgb.Booster:
        """The xgboost booster of a version (the champion when `version` is None)."""
        from mlspec.runtime.train import load_booster

        return load_booster(self.load_model_bytes(model_name, version))

    def load_encoding(self, model_name: str, version: str | None = None) -> FeatureEncoding:
        """The feature encoding the version was trained with."""
        from mlspec.runtime.encode import FeatureEncoding

        return FeatureEncoding.from_data(self.get(model_name, version).metadata["encoding"])

    def load_reference(self, model_name: str, version: str | None = None) -> ReferenceStats:
        """The drift reference statistics stored with the version."""
        from mlspec.runtime.reference import ReferenceStats

        info = self.get(model_name, version)
        return ReferenceStats.from_json((info.path / REFERENCE_FILE).read_text(encoding="utf-8"))

    # ---- champion pointer ----------------------------------------------------------------

    def champion(self, model_name: str) -> str | None:
        """The current champion version id, or None."""
        _check_name(model_name)
        return self._read_pointer(model_name).get("current")

    def champion_history(self, model_name: str) -> list[str]:
        """Previous champions, most recent last (what `rollback` returns to, in reverse)."""
        _check_name(model_name)
        return list(self._read_pointer(model_name).get("history", []))

    def promote(self, model_name: str, version: str, *, force: bool = False) -> str:
        """Make `version` the champion; rejected versions need force=True.  Returns the full id."""
        info = self.get(model_name, version)
        if info.status == "rejected" and not force:
            failed = [r for r in info.metadata.get("gate", {}).get("results", []) if not r.get("passed")]
            why = "; ".join(f"{r['text']} ({r['reason']})" for r in failed) or "status is rejected"
            raise RegistryError(f"version {info.version} of `{model_name}` was rejected by its gate: {why}. "
                                f"Promote it anyway with --force (force=True)")
        with self._locked(model_name):
            pointer = self._read_pointer(model_name)
            current = pointer.get("current")
            if current == info.version:
                return info.version
            history = list(pointer.get("history", []))
            if current is not None:
                history.append(current)
            self._write_pointer(model_name, {"model": model_name, "current": info.version, "history": history,
                                             "updated_at": _now(), "action": "promote"})
        return info.version

    def rollback(self, model_name: str) -> str:
        """Return to the previous champion; the current one is dropped from the pointer."""
        _check_name(model_name)
        with self._locked(model_name):
            pointer = self._read_pointer(model_name)
            history = list(pointer.get("history", []))
            current = pointer.get("current")
            if not history:
                state = f"the champion is {current} and it has no predecessor" if current else "there is no champion"
                raise RegistryError(f"cannot roll back `{model_name}`: {state}")
            previous = history.pop()
            self._write_pointer(model_name, {"model": model_name, "current": previous, "history": history,
                                             "updated_at": _now(), "action": f"rollback from {current}"})
        return str(previous)

    # ---- internals -------------------------------------------------------------------------

    def _model_dir(self, model_name: str) -> Path:
        return self.root / model_name

    def _versions_dir(self, model_name: str) -> Path:
        return self._model_dir(model_name) / "versions"

    def _version_ids(self, model_name: str) -> list[str]:
        vdir = self._versions_dir(model_name)
        if not vdir.is_dir():
            return []
        return sorted(p.name for p in vdir.iterdir() if _VERSION.match(p.name) and (p / METADATA_FILE).is_file())

    def _by_age(self, model_name: str) -> list[str]:
        return [i.version for i in self.versions(model_name)]

    def _read(self, model_name: str, version: str) -> VersionInfo:
        path = self._versions_dir(model_name) / version
        try:
            meta = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"version {version} of `{model_name}` is unreadable: {exc}") from None
        try:
            return VersionInfo(model_name, version, str(meta["status"]), str(meta["created_at"]),
                               str(meta["spec_hash"]), str(meta["data_fingerprint"]), dict(meta["metrics"]),
                               bool(meta["gate"]["passed"]), path, meta)
        except (KeyError, TypeError) as exc:
            raise RegistryError(f"version {version} of `{model_name}` has incomplete metadata (missing {exc})") from None

    def _sweep_temp_dirs(self, model_name: str) -> None:
        """Remove version folders a killed writer left half-written (older than an hour: not in flight)."""
        cutoff = time.time() - 3600
        for tmp in self._model_dir(model_name).glob(".tmp-*"):
            with contextlib.suppress(OSError):
                if tmp.is_dir() and tmp.stat().st_mtime < cutoff:
                    shutil.rmtree(tmp, ignore_errors=True)

    def _pointer_path(self, model_name: str) -> Path:
        return self._model_dir(model_name) / CHAMPION_FILE

    def _read_pointer(self, model_name: str) -> dict[str, Any]:
        path = self._pointer_path(model_name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"current": None, "history": []}
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"the champion pointer {path} is unreadable: {exc}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"the champion pointer {path} is not a JSON object")
        return data

    def _write_pointer(self, model_name: str, pointer: dict[str, Any]) -> None:
        directory = self._model_dir(model_name)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f".{CHAMPION_FILE}.*.tmp"):  # left by a killed writer; we hold the lock
            stale.unlink(missing_ok=True)
        tmp = directory / f".{CHAMPION_FILE}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
        _write_file(tmp, _dumps(pointer).encode())
        os.replace(tmp, self._pointer_path(model_name))
        _fsync_dir(directory)

    @contextlib.contextmanager
    def _locked(self, model_name: str) -> Iterator[None]:
        directory = self._model_dir(model_name)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+b") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def version_id(model_bytes: bytes, spec_hash: str, data_fingerprint: str) -> str:
    """12 hex digits of sha256 over the model bytes, the spec hash and the data fingerprint."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(model_bytes).digest())
    h.update(b"\x00spec\x00" + spec_hash.encode())
    h.update(b"\x00data\x00" + data_fingerprint.encode())
    return h.hexdigest()[:12]


def _metadata(model_name: str, version: str, result: TrainResult, spec_hash: str, compiled_spec: Mapping[str, Any],
              status: str, gate: GateVerdict) -> dict[str, Any]:
    return {
        "format": 1,
        "model": model_name,
        "version": version,
        "status": status,
        "created_at": _now(),
        "spec_hash": spec_hash,
        "compiled_spec": dict(compiled_spec),
        "data_fingerprint": result.data_fingerprint,
        "model_sha256": hashlib.sha256(result.model_bytes).hexdigest(),
        "task": result.task,
        "label": result.label,
        "classes": list(result.classes),
        "threshold": result.threshold,
        "features": [{"name": f.name, "dtype": f.dtype.value} for f in result.encoding.features],
        "encoding": result.encoding.to_data(),
        "params": result.params,
        "split": result.split,
        "n_train": result.n_train,
        "n_test": result.n_test,
        "metrics": result.metrics,
        "segment": result.segment,
        "segment_metrics": {k: v.to_data() for k, v in result.segment_metrics.items()},
        "calibration": [b.to_data() for b in result.calibration],
        "feature_importance": result.feature_importance,
        "gate": gate.to_data(),
        "notes": list(result.notes),
        "library_versions": library_versions(),
    }


def _check_name(model_name: str) -> None:
    if not _NAME.match(model_name):
        raise RegistryError(f"`{model_name}` is not a model name (letters, digits, `_` and `-`)")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(_clean(data), indent=2, sort_keys=True, ensure_ascii=False, default=_json_default, allow_nan=False) + "\n"


def _clean(x: object) -> object:
    """JSON has no NaN/inf: an undefined metric is stored as null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _json_default(x: object) -> object:
    import numpy as np

    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    raise TypeError(f"cannot store {type(x).__name__} in registry metadata")


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
