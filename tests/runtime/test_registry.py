"""The local model registry: content addressing, metadata, promotion, rollback, crash safety."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mlspec.ir.spec import GateRule
from mlspec.runtime.encode import encode
from mlspec.runtime.gate import GateVerdict, evaluate_gate
from mlspec.runtime.registry import Registry, RegistryError, library_versions, version_id
from mlspec.runtime.train import TrainResult, predict_scores, train
from tests.runtime.test_train import make_frame, make_model

REPO = Path(__file__).resolve().parents[2]
SPEC = {"kind": "Spec", "models": [{"name": "churn_risk"}]}
STRICT = (GateRule("auc", ">=", 0.99, False, "auc >= 0.99"),)


@pytest.fixture(scope="module")
def result() -> TrainResult:
    return train(make_model(), make_frame(), "churned", "observed_at")


def _register(reg: Registry, result: TrainResult, spec_hash: str = "spec-1", *, status: str = "candidate") -> str:
    gate = evaluate_gate(STRICT if status == "rejected" else (), result.metrics, None)
    return reg.register("churn_risk", result, spec_hash=spec_hash, compiled_spec=SPEC, status=status,  # type: ignore[arg-type]
                        gate=gate).version


def test_register_writes_a_content_addressed_version(tmp_path: Path, result: TrainResult) -> None:
    reg = Registry(tmp_path / "registry")
    info = reg.register("churn_risk", result, spec_hash="spec-1", compiled_spec=SPEC, status="candidate",
                        gate=GateVerdict(True, ()))
    assert info.version == version_id(result.model_bytes, "spec-1", result.data_fingerprint)
    assert len(info.version) == 12 and info.path == tmp_path / "registry" / "churn_risk" / "versions" / info.version
    assert sorted(p.name for p in info.path.iterdir()) == ["metadata.json", "model.ubj", "reference.json"]
    assert (info.path / "model.ubj").read_bytes() == result.model_bytes
    meta = json.loads((info.path / "metadata.json").read_text())
    for key in ("spec_hash", "compiled_spec", "data_fingerprint", "features", "encoding", "params", "metrics",
                "segment_metrics", "calibration", "gate", "library_versions", "created_at"):
        assert key in meta, key
    assert meta["data_fingerprint"] == result.data_fingerprint and meta["compiled_spec"] == SPEC
    assert meta["features"][2] == {"name": "profile.plan", "dtype": "string"}
    assert meta["segment_metrics"]["trial"]["metrics"] is None
    assert set(meta["library_versions"]) >= {"python", "xgboost", "numpy", "polars", "duckdb", "mlspec"}
    assert meta["library_versions"] == library_versions()
    assert info.metrics == result.metrics and info.status == "candidate" and info.gate_passed
    # nothing half-written is left behind
    assert [p.name for p in (tmp_path / "registry" / "churn_risk").iterdir()] == ["versions"]


def test_same_content_registers_once(tmp_path: Path, result: TrainResult) -> None:
    reg = Registry(tmp_path)
    first = _register(reg, result)
    created = reg.get("churn_risk", first).created_at
    assert _register(reg, result) == first
    assert reg.get("churn_risk", first).created_at == created
    second = _register(reg, result, "spec-2")
    assert second != first
    assert [v.version for v in reg.versions("churn_risk")] == [first, second]
    assert reg.models() == ["churn_risk"]


def test_loading_gives_back_what_was_trained(tmp_path: Path, result: TrainResult) -> None:
    reg = Registry(tmp_path)
    version = _register(reg, result)
    assert reg.load_encoding("churn_risk", version) == result.encoding
    assert reg.load_reference("churn_risk", version) == result.reference
    booster = reg.load_booster("churn_risk", version)
    x = encode(make_frame(50, seed=9), result.encoding)
    from mlspec.runtime.train import load_booster

    np.testing.assert_array_equal(predict_scores(booster, x, "binary"),
                                  predict_scores(load_booster(result.model_bytes), x, "binary"))
    (tmp_path / "churn_risk" / "versions" / version / "model.ubj").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="does not match its recorded checksum"):
        reg.load_booster("churn_risk", version)


def test_versions_resolve_by_prefix_and_unknown_ones_list_close_matches(tmp_path: Path, result: TrainResult) -> None:
    reg = Registry(tmp_path)
    version = _register(reg, result)
    assert reg.get("churn_risk", version[:4]).version == version
    typo = version[:-1] + ("0" if version[-1] != "0" else "1")
    with pytest.raises(RegistryError, match=rf"has no version `{typo}`; did you mean `{version}`\?"):
        reg.get("churn_risk", typo)
    with pytest.raises(RegistryError, match=r"model `churn_rsk` has no registered versions; did you mean `churn_risk`"):
        reg.get("churn_rsk", version)
    with pytest.raises(RegistryError, match="is not a model name"):
        reg.get("../etc", version)
    with pytest.raises(RegistryError, match="has no champion yet"):
        reg.get("churn_risk")


def test_promote_and_rollback(tmp_path: Path, result: TrainResult) -> None:
    reg = Registry(tmp_path)
    a, b, c = (_register(reg, result, f"spec-{i}") for i in range(3))
    assert reg.champion("churn_risk") is None
    with pytest.raises(RegistryError, match="cannot roll back `churn_risk`: there is no champion"):
        reg.rollback("churn_risk")
    assert reg.promote("churn_risk", a[:6]) == a
    with pytest.raises(RegistryError, match=f"the champion is {a} and it has no predecessor"):
        reg.rollback("churn_risk")
    reg.promote("churn_risk", b)
    reg.promote("churn_risk", b)  # promoting the champion again changes nothing
    reg.promote("churn_risk", c)
    assert reg.champion("churn_risk") == c and reg.champion_history("churn_risk") == [a, b]
    assert reg.get("churn_risk").version == c
    assert reg.rollback("churn_risk") == b
    assert reg.rollback("churn_risk") == a
    assert reg.champion("churn_risk") == a and reg.champion_history("churn_risk") == []
    pointer = json.loads((tmp_path / "churn_risk" / "champion.json").read_text())
    assert pointer["current"] == a and pointer["history"] == []


def test_rejected_versions_need_force(tmp_path: Path, result: TrainResult) -> None:
    reg = Registry(tmp_path)
    rejected = _register(reg, result, status="rejected")
    info = reg.get("churn_risk", rejected)
    assert info.status == "rejected" and not info.gate_passed
    with pytest.raises(RegistryError, match=r"was rejected by its gate: auc >= 0.99 \(auc = 0\.\d+ misses >= 0.9900\)"
                       r"\. Promote it anyway with --force"):
        reg.promote("churn_risk", rejected)
    assert reg.champion("churn_risk") is None
    assert reg.promote("churn_risk", rejected, force=True) == rejected


_CHURN = textwrap.dedent("""
    import random, sys
    from mlspec.runtime.registry import Registry
    root, versions, seed = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    reg, rnd = Registry(root), random.Random(seed)
    print("ready", flush=True)
    for _ in range(200_000):  # bounded, and far more than fits before the kill (0.15 s at most)
        if reg.champion_history("churn_risk") and rnd.random() < 0.4:
            reg.rollback("churn_risk")
        else:
            reg.promote("churn_risk", rnd.choice(versions))
    print("done", flush=True)
""")


def test_champion_pointer_survives_sigkill_at_random_moments(tmp_path: Path, result: TrainResult) -> None:
    reg = Registry(tmp_path)
    versions = [_register(reg, result, f"spec-{i}") for i in range(4)]
    pointer = tmp_path / "churn_risk" / "champion.json"
    reg.promote("churn_risk", versions[0])  # the pointer exists before the first kill
    rnd = random.Random(20260601)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed_mid_loop = 0
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _CHURN, str(tmp_path), ",".join(versions), str(attempt)],
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0.005, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        killed_mid_loop += proc.returncode == -signal.SIGKILL
        data = json.loads(pointer.read_text())  # parses: never torn
        assert data["current"] in versions
        assert all(v in versions for v in data["history"])
        assert reg.champion("churn_risk") == data["current"]
        assert reg.get("churn_risk").version == data["current"]
    assert killed_mid_loop == 8  # every kill landed in the loop, not after it
    # a later writer cleans up temp files a killed writer left behind (promoting the current
    # champion again writes nothing, so promote another version)
    reg.promote("churn_risk", next(v for v in versions if v != reg.champion("churn_risk")))
    assert sorted(p.name for p in pointer.parent.iterdir() if p.name.endswith(".tmp")) == []
