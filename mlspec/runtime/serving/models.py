"""Champion models held in memory and swapped, without a restart, when the pointer file changes.

`mlspec promote` and `mlspec rollback` replace ``<registry>/<model>/champion.json`` atomically. A
watcher thread reads that small file every `poll_seconds` (0.2 s by default), comparing bytes
rather than mtimes so that two updates within one filesystem clock tick are still seen. When it
changed and names another version, the new booster and encoding are loaded completely, the
encoding's features are checked against what this spec computes, the booster is warmed with one
prediction, and only then is the single `current` reference replaced. A request reads that
reference once and uses the object it got for its whole life, so every request sees one whole
model (old or new) and none fails during a swap. A version that cannot be loaded is reported
(`last_error`, shown by /ready, and the log) and the previous champion keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mlspec.runtime.registry import CHAMPION_FILE, Registry, RegistryError
from mlspec.runtime.serving.predictor import Predict, predictor_for

if TYPE_CHECKING:
    import xgboost as xgb

    from mlspec.runtime.encode import FeatureEncoding

__all__ = ["ChampionHolder", "LoadedModel", "ModelWatcher"]

log = logging.getLogger("mlspec.serve")
_Signature = bytes | None


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """One model version, ready to predict: booster, the encoding it was trained with, its task."""

    name: str
    version: str
    booster: xgb.Booster
    encoding: FeatureEncoding
    task: str
    classes: tuple[str, ...]
    predict: Predict  # `booster.inplace_predict(m, missing=nan)`, or the same through the C API
    loaded_at: float = field(default_factory=time.time)

    def scores(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """P(positive) / value per row; (n, k) class probabilities for multiclass."""
        from mlspec.runtime.train import predict_scores

        return predict_scores(self.booster, matrix, self.task, self.predict)


def load_version(registry: Registry, name: str, version: str) -> LoadedModel:
    """Load and warm one version fully; raises RegistryError (or xgboost's error) if it cannot."""
    from mlspec.runtime.train import load_booster

    info = registry.get(name, version)
    booster = load_booster(registry.load_model_bytes(name, info.version))
    encoding = registry.load_encoding(name, info.version)
    model = LoadedModel(name, info.version, booster, encoding, str(info.metadata.get("task", "binary")),
                        tuple(str(c) for c in info.metadata.get("classes", ())),
                        predictor_for(booster, len(encoding.features)))
    model.scores(np.full((1, len(encoding.features)), np.nan, dtype=np.float32))  # first call allocates; do it here
    return model


class ChampionHolder:
    """The current champion of one model; `current` is replaced whole, never mutated."""

    def __init__(self, registry: Registry, name: str, computable: Sequence[str],
                 on_swap: Callable[[LoadedModel | None, LoadedModel], None] | None = None) -> None:
        self.registry = registry
        self.name = name
        self.computable = frozenset(computable)  # qualified features the serving path can compute
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.reloads = 0
        self._signature: _Signature = None
        self._failed_version: str | None = None
        self._on_swap = on_swap
        self._lock = threading.Lock()  # one refresh at a time (watcher thread vs. startup)

    @property
    def pointer(self) -> Path:
        return self.registry.root / self.name / CHAMPION_FILE

    def refresh(self) -> bool:
        """Load the champion if the pointer changed; True when a new model was swapped in."""
        with self._lock:
            signature = _read(self.pointer)
            if signature == self._signature and self.current is not None:
                return False
            try:
                version = self.registry.champion(self.name)
            except RegistryError as e:
                self.last_error = e.message
                return False
            self._signature = signature
            if version is None:
                self.last_error = f"model `{self.name}` has no champion; promote a version first"
                return False
            if self.current is not None and self.current.version == version:
                self.last_error = None
                return False
            if version == self._failed_version:
                return False
            try:
                model = load_version(self.registry, self.name, version)
                missing = [n for n in model.encoding.names if n not in self.computable]
                if missing:
                    raise RegistryError(f"version {version} of `{self.name}` needs feature(s) {', '.join(missing)}, "
                                        "which this spec does not compute")
            except Exception as e:  # keep serving the previous champion, whatever went wrong
                self._failed_version = version
                self.last_error = f"cannot load version {version} of `{self.name}`: {getattr(e, 'message', e)}"
                log.error("%s; still serving %s", self.last_error, self.current.version if self.current else "nothing")
                return False
            previous, self.current = self.current, model  # the swap: one reference assignment
            self._failed_version = None
            self.last_error = None
            self.reloads += previous is not None
            if self._on_swap is not None:
                self._on_swap(previous, model)
            log.info("%s: serving version %s%s", self.name, model.version,
                     f" (was {previous.version})" if previous else "")
            return True


class ModelWatcher:
    """A daemon thread that refreshes every holder each `poll_seconds`, off the request path."""

    def __init__(self, holders: Sequence[ChampionHolder], poll_seconds: float = 0.2) -> None:
        self.holders = list(holders)
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mlspec-model-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            for holder in self.holders:
                try:
                    holder.refresh()
                except Exception:  # never let the watcher die: the next tick tries again
                    log.exception("refreshing `%s` failed", holder.name)


def _read(path: Path) -> _Signature:
    try:
        return path.read_bytes()
    except OSError:
        return None
