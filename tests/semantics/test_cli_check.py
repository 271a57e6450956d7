"""`mlspec check` end to end: the example specs, output formats, exit codes, multi-file projects."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlspec.cli import main
from mlspec.compiler import compile_paths
from mlspec.diagnostics import render_text
from tests.semantics.golden import CASES_DIR, ROOT, read_case

SPECS = ROOT / "specs"
EXAMPLES = ("churn", "fraud", "sensors")
MULTI = ROOT / "tests" / "cases" / "multi"
JSON_KEYS = {"code", "severity", "message", "file", "line", "col", "end_line", "end_col", "hint"}


def run(*argv: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """main(argv) in-process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        os.chdir(before)
    return code, out.getvalue(), err.getvalue()


def case_in(tmp_path: Path, name: str) -> Path:
    """The spec part of a golden case, written to tmp_path under its own name."""
    case = read_case(CASES_DIR / name)
    path = tmp_path / name
    path.write_text(case.spec, encoding="utf-8")
    return path


# ---- the example specs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_spec_checks_clean(name: str) -> None:
    code, out, err = run("check", str(SPECS / f"{name}.mlspec"))
    assert (code, err) == (0, "")
    assert out.startswith(f"ok: project `{name}`")
    code, out, _ = run("check", "--format", "json", str(SPECS / f"{name}.mlspec"))
    assert (code, json.loads(out)) == (0, [])


def test_all_examples_are_tested() -> None:
    assert sorted(p.stem for p in SPECS.glob("*.mlspec")) == sorted(EXAMPLES)


def test_fraud_is_a_realtime_card_model() -> None:
    spec = compile_paths([SPECS / "fraud.mlspec"]).spec
    assert spec is not None
    serve = next(s for s in spec.serves if s.mode == "realtime")
    assert serve.latency_p99_ms is not None and serve.replicas is not None and serve.shadow is not None
    assert {e.key for e in spec.entities} == {"card_id"}
    request = [g for g in spec.groups if g.request]
    assert request and all(g.source == "transactions" for g in request)
    label = spec.labels[0]
    assert (label.source, label.value) == ("transactions", "is_fraud")
    windows = {n.window_ms for g in spec.groups for f in g.features for n in _walk(f.expr) if hasattr(n, "window_ms")}
    assert {3_600_000, 86_400_000, 7 * 86_400_000} <= windows
    fns = {n.fn for g in spec.groups for f in g.features for n in _walk(f.expr) if hasattr(n, "fn")}
    assert {"count", "sum", "mean", "distinct_count"} <= fns
    kinds = {r.kind for m in spec.monitors for r in m.rules}
    assert {"drift", "prediction_drift", "latency", "error_rate"} <= kinds
    assert spec.models[0].gate


def test_sensors_is_a_streaming_model() -> None:
    spec = compile_paths([SPECS / "sensors.mlspec"]).spec
    assert spec is not None
    serve = spec.serves[0]
    assert (serve.mode, serve.input_stream, serve.output_stream) == ("streaming", "sensor_readings", "sensor_anomalies")
    assert any(s.stream == "sensor_readings" for s in spec.sources)
    windows = {n.window_ms for g in spec.groups for f in g.features for n in _walk(f.expr) if hasattr(n, "window_ms")}
    assert {300_000, 3_600_000} <= windows
    assert spec.monitors and spec.alerts


def _walk(e: object) -> list[object]:
    from mlspec.ir import expr as ir

    assert isinstance(e, ir.EXPR_KINDS)
    return list(ir.walk(e))  # type: ignore[arg-type]


# ---- output formats and exit codes ----------------------------------------------------------


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = case_in(tmp_path, "many_errors.mlspec")
    code, _, err = run("check", path.name, cwd=tmp_path)
    assert code == 1
    headers = [line for line in err.splitlines() if line.startswith("many_errors.mlspec:")]
    assert len(headers) == 6
    assert {h.split("error[")[1][:4] for h in headers} == {"E102", "E111", "E120", "E170"}
    lines = [int(h.split(":")[1]) for h in headers]
    assert lines == sorted(lines), "diagnostics come in file order"
    assert err.rstrip().endswith("6 errors, 0 warnings")


def test_json_format_gives_positions_and_hints(tmp_path: Path) -> None:
    path = case_in(tmp_path, "e111_unknown_column.mlspec")
    code, out, err = run("check", "--format", "json", path.name, cwd=tmp_path)
    assert (code, err) == (1, "")
    [d] = json.loads(out)
    assert set(d) == JSON_KEYS
    assert d == {
        "code": "E111", "severity": "error", "message": "unknown name `amout`",
        "file": "e111_unknown_column.mlspec", "line": 19, "col": 19, "end_line": 19, "end_col": 24,
        "hint": "did you mean `amount`?",
    }
    line = path.read_text(encoding="utf-8").splitlines()[d["line"] - 1]
    assert line[d["col"] - 1:d["end_col"] - 1] == "amout"


def test_json_format_for_many_errors_matches_the_text_output(tmp_path: Path) -> None:
    path = case_in(tmp_path, "many_errors.mlspec")
    _, out, _ = run("check", "--format", "json", path.name, cwd=tmp_path)
    _, _, err = run("check", path.name, cwd=tmp_path)
    found = json.loads(out)
    assert all(set(d) == JSON_KEYS for d in found)
    assert [f"{d['file']}:{d['line']}:{d['col']}: error[{d['code']}]: {d['message']}" for d in found] == [
        line for line in err.splitlines() if line.startswith("many_errors.mlspec:")]
    assert all(isinstance(d["line"], int) and d["end_line"] >= d["line"] for d in found)


def test_syntax_errors_are_json_too(tmp_path: Path) -> None:
    path = case_in(tmp_path, "e003_misspelled_declaration.mlspec")
    code, out, _ = run("check", "--format", "json", path.name, cwd=tmp_path)
    [d] = json.loads(out)
    assert (code, d["code"], d["hint"]) == (1, "E003", "did you mean `features`?")


@pytest.mark.parametrize("name", ["w200_source_without_timestamp.mlspec", "w201_random_split.mlspec"])
def test_warnings_do_not_fail_the_check(tmp_path: Path, name: str) -> None:
    path = case_in(tmp_path, name)
    code, out, err = run("check", path.name, cwd=tmp_path)
    assert code == 0
    assert "warning[W20" in err and "0 errors, 1 warning" in err
    assert out.startswith("ok: ")
    code, out, _ = run("check", "--format", "json", path.name, cwd=tmp_path)
    assert code == 0
    assert [d["severity"] for d in json.loads(out)] == ["warning"]


def test_cli_text_is_render_text_of_the_diagnostics(tmp_path: Path) -> None:
    """The golden runner and the CLI agree: the CLI prints render_text(diagnostics, texts)."""
    path = case_in(tmp_path, "e120_type_errors.mlspec")
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        compiled = compile_paths([path.name])
    finally:
        os.chdir(before)
    _, _, err = run("check", path.name, cwd=tmp_path)
    assert err.startswith(render_text(compiled.diagnostics, compiled.texts) + "\n")


# ---- several files, one project -------------------------------------------------------------


def test_a_directory_is_one_project() -> None:
    code, out, err = run("check", str(MULTI))
    assert (code, err) == (0, "")
    assert out.startswith("ok: project `shop`, 11 nodes, 2 features")


def test_imports_bring_in_the_rest_of_the_project() -> None:
    assert run("check", str(MULTI / "model.mlspec"))[:2] == run("check", str(MULTI))[:2]
    code, out, _ = run("check", str(MULTI / "features.mlspec"))
    assert code == 0 and "5 nodes" in out  # data + features only: no model, serve or monitor


def test_files_named_twice_are_read_once() -> None:
    code, _, err = run("check", str(MULTI / "data.mlspec"), str(MULTI), str(MULTI / "model.mlspec"))
    assert (code, err) == (0, "")


def test_without_its_import_a_file_does_not_know_the_names(tmp_path: Path) -> None:
    text = (MULTI / "model.mlspec").read_text(encoding="utf-8").replace('import "features.mlspec"\n', "")
    (tmp_path / "model.mlspec").write_text(text, encoding="utf-8")
    code, _, err = run("check", "model.mlspec", cwd=tmp_path)
    assert code == 1
    assert "model.mlspec:4:14: error[E111]: unknown label `churned`" in err


def test_errors_in_an_imported_file_show_that_file(tmp_path: Path) -> None:
    for f in MULTI.glob("*.mlspec"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    features = tmp_path / "features.mlspec"
    features.write_text(features.read_text(encoding="utf-8").replace("sum(amount,", "sum(amont,"), encoding="utf-8")
    code, _, err = run("check", "model.mlspec", cwd=tmp_path)
    assert code == 1
    assert err.splitlines()[:3] == [
        "features.mlspec:7:20: error[E111]: unknown name `amont`",
        "7 |   spend_90d  = sum(amont, last 90d)",
        "                       ^^^^^",
    ]


def test_a_declaration_repeated_in_another_file_points_at_the_first(tmp_path: Path) -> None:
    for f in MULTI.glob("*.mlspec"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "more.mlspec").write_text('entity customer { key = customer_id }\n', encoding="utf-8")
    code, _, err = run("check", ".", cwd=tmp_path)
    assert code == 1
    assert "more.mlspec:1:8: error[E103]: entity `customer` is declared twice" in err
    assert "= hint: first declared at data.mlspec:9:8" in err


def test_import_cycles_are_fine(tmp_path: Path) -> None:
    (tmp_path / "a.mlspec").write_text('import "b.mlspec"\nentity customer { key = customer_id }\n', encoding="utf-8")
    (tmp_path / "b.mlspec").write_text('import "a.mlspec"\nalert log { log = true }\n', encoding="utf-8")
    code, _, err = run("check", "a.mlspec", cwd=tmp_path)
    assert (code, err) == (0, "")


def test_a_directory_without_specs_is_an_import_problem(tmp_path: Path) -> None:
    code, out, _ = run("check", "--format", "json", str(tmp_path))
    assert code == 1
    assert [d["code"] for d in json.loads(out)] == ["E180"]


# ---- the real command -----------------------------------------------------------------------


def mlspec_cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlspec.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_subprocess_check_clean_and_broken(tmp_path: Path) -> None:
    done = mlspec_cli("check", "specs/fraud.mlspec")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith("ok: project `fraud`")
    path = case_in(tmp_path, "many_errors.mlspec")
    bad = mlspec_cli("check", path.name, cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.rstrip().endswith("6 errors, 0 warnings")
