"""A spec full of hostile strings (quotes, escaped newlines, {{ }}, $(...), YAML anchors and tags,
unicode) compiles for every target to files that parse and carry those strings only as data."""

from __future__ import annotations

import ast
import io
import json
import re
import shlex
import tokenize
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlspec.backends import BackendError, generate
from mlspec.backends.common import dns_label, http_url, ident, path
from mlspec.backends.k8s.alerts import go_template_literal, promql_regex_alternatives, promql_string
from mlspec.compiler import compile_paths
from tests.backends.support import CASES, TARGETS, golden_files

HOSTILE = CASES / "hostile.mlspec"
MARKERS = ("$(touch", "$(id)", "$(reboot)", "{{ config }}", "{{ 7*7 }}", "{{ 7 * 7 }}", "DROP TABLE", "os.system",
           "!!python", "&anchor", "{% raw %}", "lookup(", "\u202e", "'''")


# the only Jinja the Airflow modules hold: secrets from Variables, and the Pushgateway Variable (or '')
JINJA = ("{{ var.value.", "{{ var.value.get('MLSPEC_PUSHGATEWAY_URL', '') }}")


@pytest.fixture(scope="module")
def hostile() -> dict[str, dict[str, str]]:
    spec, dag = compile_paths([HOSTILE]).checked
    assert "$(touch /tmp/pwned)" in (spec.project.description or "")
    return {t: generate(t, spec, dag, "cases/hostile.mlspec", {"out_dir": "out/docker"} if t == "docker" else {})
            for t in TARGETS}


def _plain(value: Any) -> None:
    """Only the types YAML's safe schema makes: no tag turned into an object."""
    if isinstance(value, dict):
        for k, v in value.items():
            _plain(k)
            _plain(v)
    elif isinstance(value, list):
        for v in value:
            _plain(v)
    else:
        assert value is None or isinstance(value, str | int | float | bool), type(value)


def _names(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.alias):
            out.add(node.name)
        elif isinstance(node, ast.FunctionDef | ast.arg | ast.keyword):
            out.add(getattr(node, "name", None) or getattr(node, "arg", None) or "")
    return out


@pytest.mark.parametrize("operator", ["bash", "kubernetes"])
def test_hostile_python_is_only_data(hostile: dict[str, dict[str, str]], operator: str) -> None:
    benign = {n: ast.parse(t) for n, t in golden_files("churn", "airflow", {"operator": operator}).items()}
    allowed = set().union(*(_names(t) for t in benign.values()))
    spec, dag = compile_paths([HOSTILE]).checked
    airflow = generate("airflow", spec, dag, "cases/hostile.mlspec", {"operator": operator})
    modules = {**airflow, "fetch_model.py": hostile["docker"]["fetch_model.py"]}
    for name, text in modules.items():
        tree = ast.parse(text, name)
        if name != "fetch_model.py":
            assert _names(tree) <= allowed, f"{name}: code shape changed with the spec's strings"
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                assert not any(m in tok.string for m in MARKERS), tok.string
        for node in ast.walk(tree):  # Jinja-templated fields only ever see the Variable patterns
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "{{" in node.value:
                assert node.value in JINJA, node.value
    assert repr("x\"; import os; os.system('id') #") in airflow["hostile_pipeline.py"]


def test_hostile_yaml_loads_as_plain_data(hostile: dict[str, dict[str, str]]) -> None:
    spec, _ = compile_paths([HOSTILE]).checked
    for target in ("k8s", "dvc"):
        for name, text in hostile[target].items():
            docs = list(yaml.safe_load_all(text))
            assert docs, name
            for doc in docs:
                _plain(doc)
    (cm,) = list(yaml.safe_load_all(hostile["k8s"]["configmap.yaml"]))
    compiled = json.loads(cm["data"]["compiled.json"])
    assert compiled["project"]["description"] == spec.project.description
    assert compiled["sources"][0]["path"] == spec.sources[0].path
    (deployment, _pdb) = list(yaml.safe_load_all(hostile["k8s"]["stream-churn_stream.yaml"]))
    stream = next(s for s in spec.serves if s.mode == "streaming")
    annotations = deployment["metadata"]["annotations"]
    assert (annotations["mlspec.dev/stream-input"], annotations["mlspec.dev/stream-output"]) == (
        stream.input_stream, stream.output_stream) and "$(id)" in annotations["mlspec.dev/stream-input"]
    stages = yaml.safe_load(hostile["dvc"]["dvc.yaml"])["stages"]
    assert spec.source("orders").path in stages["extract_orders"]["deps"]
    assert "scores/$(id)'\"{{x}}\n.parquet" in stages["score_churn_risk"]["outs"]
    for stage in stages.values():
        words = shlex.split(stage["cmd"])
        assert words[4:7] == ["mlspec", "run", "--node"] and not any(m in stage["cmd"] for m in MARKERS)


def test_hostile_strings_never_reach_commands_or_dockerfiles(hostile: dict[str, dict[str, str]]) -> None:
    for name, text in hostile["docker"].items():
        if name != "fetch_model.py":
            assert not any(m in text for m in MARKERS), name
    for text in hostile["k8s"].values():
        for doc in yaml.safe_load_all(text):
            for container in _containers(doc):
                assert not any(m in " ".join(container.get("args", [])) for m in MARKERS)
    spec, dag = compile_paths([HOSTILE]).checked
    kserve = generate("k8s", spec, dag, "cases/hostile.mlspec", {"kserve": "true"})
    isvcs = [d for t in kserve.values() for d in yaml.safe_load_all(t) if d["kind"] == "InferenceService"]
    assert isvcs
    for doc in isvcs:
        _plain(doc)
        for container in doc["spec"]["predictor"]["containers"]:
            assert not any(m in " ".join(container["args"]) for m in MARKERS)
    churn_entry = golden_files("churn", "docker")["entrypoint.sh"].split("overwritten.\n", 1)[1]
    assert hostile["docker"]["entrypoint.sh"].split("overwritten.\n", 1)[1] == churn_entry


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", {}).get("template") or spec.get("template") or {}
    return list(template.get("spec", {}).get("containers", []))


def test_prometheus_text_is_escaped() -> None:
    assert go_template_literal("a {{ x }} b") == 'a {{ "{{" }} x {{ "}}" }} b'
    assert go_template_literal("}}{{") == '{{ "}}" }}{{ "{{" }}'
    assert promql_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert promql_regex_alternatives(["a.b", "c|d"]) == '"a\\\\.b|c\\\\|d"'


def test_names_and_paths_are_validated(tmp_path: Path) -> None:
    for bad in ("a-b", "1a", "a b", "ä", "a\n"):
        with pytest.raises(BackendError):
            ident(bad, "name")
    for bad in ("/etc/passwd", "../x", "a b", "a;b", "{{x}}", "$(id)", "a\nb"):
        with pytest.raises(BackendError):
            path(bad, "path")
    assert path("specs/churn.mlspec", "path") == "specs/churn.mlspec"
    assert dns_label("churn", "churn_api") == "churn-churn-api"
    assert dns_label("Churn", "API") != dns_label("churn", "api")  # case folds only with a hash suffix
    assert len(dns_label("x" * 80, limit=52)) <= 52
    text = HOSTILE.read_text(encoding="utf-8").replace('env("ONCALL_WEBHOOK_URL")', 'env("$(id)")')
    (tmp_path / "bad_env.mlspec").write_text(text, encoding="utf-8")
    spec, dag = compile_paths([tmp_path / "bad_env.mlspec"]).checked
    for target in TARGETS:
        with pytest.raises(BackendError, match="does not name an environment variable"):
            generate(target, spec, dag, "bad_env.mlspec")
    (tmp_path / "my spec.mlspec").write_text(HOSTILE.read_text(encoding="utf-8"), encoding="utf-8")
    spec, dag = compile_paths([tmp_path / "my spec.mlspec"]).checked
    with pytest.raises(BackendError, match="relative path"):
        generate("k8s", spec, dag, "my spec.mlspec")
    assert re.fullmatch(r"[a-z0-9-]+", dns_label("a_b", "c"))


# every target with a pushgateway_url option: each validates it with common.http_url
PUSHGATEWAY_TARGETS = (("airflow", {"operator": "bash"}), ("airflow", {"operator": "kubernetes"}), ("k8s", {}))


@pytest.mark.parametrize("url", [
    "http://gw'; import os; os.system('id') #", 'http://gw"+__import__("os").system("id")+"', "http://gw/$(id)",
    "http://gw/`id`", "http://gw/{{ 7*7 }}", "http://gw/{% raw %}", "http://gw/\\x", "http://gw:9091\nx = 1",
    "http://gw/ a", "http://gw/\u202e", "file:///etc/passwd", "ftp://gw", "gw:9091", "http://", "$PUSHGATEWAY",
])
def test_hostile_pushgateway_urls_are_rejected(url: str) -> None:
    spec, dag = compile_paths([HOSTILE]).checked
    for target, options in PUSHGATEWAY_TARGETS:
        with pytest.raises(BackendError, match="option pushgateway_url"):
            generate(target, spec, dag, "cases/hostile.mlspec", {"pushgateway_url": url, **options})


@pytest.mark.parametrize("url", ["http://user:s3cret@gw:9091", "https://token@gw/metrics", "http://a@b@gw",
                                 "http://user:s3cret@gw?x=1", "http://:s3cret@gw#f"])
def test_pushgateway_urls_with_credentials_are_rejected(url: str) -> None:
    spec, dag = compile_paths([HOSTILE]).checked
    for target, options in PUSHGATEWAY_TARGETS:
        with pytest.raises(BackendError, match="option pushgateway_url holds credentials") as err:
            generate(target, spec, dag, "cases/hostile.mlspec", {"pushgateway_url": url, **options})
        assert "s3cret" not in str(err.value) and "Secret" in str(err.value)


def test_an_at_sign_after_the_authority_is_not_userinfo() -> None:
    for url in ("http://gw:9091/a@b", "http://gw?x=a@b", "http://gw#a@b", "https://[::1]:9091/@"):
        assert http_url(url, "url") == url


def test_an_accepted_pushgateway_url_is_only_a_string_literal() -> None:
    url = "https://push.example.com:9091/a_b-c.d~e/?x=1&y=(2)*3;z=%20#f[0]@!+,"
    spec, dag = compile_paths([HOSTILE]).checked
    for operator in ("bash", "kubernetes"):
        module = generate("airflow", spec, dag, "cases/hostile.mlspec",
                          {"pushgateway_url": url, "operator": operator})["hostile_monitor.py"]
        tree = ast.parse(module)
        (assign,) = [n for n in tree.body if isinstance(n, ast.Assign)
                     and getattr(n.targets[0], "id", None) == "PUSHGATEWAY_URL"]
        assert isinstance(assign.value, ast.Constant) and assign.value.value == url
        assert [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == url] == [assign.value]
    files = generate("k8s", spec, dag, "cases/hostile.mlspec", {"pushgateway_url": url})
    assert [f for f, text in files.items() if url in text] == ["configmap.yaml"]
    (configmap,) = yaml.safe_load_all(files["configmap.yaml"])
    assert configmap["data"]["pushgateway_url"] == url


def test_libyaml_and_pure_python_emitters_write_the_same_bytes(hostile: dict[str, dict[str, str]]) -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml: only the pure-Python emitter is used")
    from mlspec.backends.common import yaml_dump

    for text in [*hostile["k8s"].values(), *hostile["dvc"].values(), *golden_files("fraud", "k8s").values()]:
        for doc in yaml.safe_load_all(text):
            assert yaml_dump(doc) == yaml_dump(doc, pure=True)
