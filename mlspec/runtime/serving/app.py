"""`mlspec serve`: the champion of every realtime serve block behind one Starlette app.

Endpoints:
    POST /v1/models/{serve}/predict   one row, or {"instances": [row, ...]}; ?explain=features
    GET  /health                      the process is alive (always 200)
    GET  /ready                       every champion and the online store are loaded (else 503)
    GET  /metrics                     Prometheus exposition (this app's own registry)
    GET  /openapi.json                OpenAPI 3.1, generated from the spec

A prediction runs on the event loop thread, synchronously: online features from the store, the
one shared encoding (`encode_row`), `inplace_predict`. That work is a few hundred microseconds, so
a thread-pool hop would cost as much as it saves, and keeping it on one thread means the store
and evaluators are never used concurrently. Model reloads and prediction-log writes happen on
their own threads; shadow scoring runs after the response has been sent.

Statuses: 400 malformed JSON, 404 unknown serve block, 413 body over 8 MiB, 422 invalid fields
(every field named), 503 no champion loaded or the online store unreachable, 500 only for a bug. An entity without online data is not an error: it is
scored on the documented default features (counts and sums 0, everything else null — the meaning
of an empty history, docs/semantics.md) and flagged `"known_entity": false`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlspec.diagnostics import did_you_mean
from mlspec.ir.spec import Model, Serve, Spec
from mlspec.runtime.encode import encode_row
from mlspec.runtime.online.features import DEFAULT_CACHE_ROWS, FeatureService
from mlspec.runtime.online.materialize import source_needs
from mlspec.runtime.online.store import OnlineStore
from mlspec.runtime.registry import Registry
from mlspec.runtime.serving.jsontext import to_json
from mlspec.runtime.serving.log import PredictionLog, Record
from mlspec.runtime.serving.metrics import CONTENT_TYPE, ServingMetrics
from mlspec.runtime.serving.models import ChampionHolder, LoadedModel, ModelWatcher
from mlspec.runtime.serving.schema import MAX_BATCH, FieldError, RequestRow, RequestSchema, schema_for

__all__ = ["FeatureSource", "Outcome", "ServeRuntime", "ServingState", "create_app", "openapi_document"]

log = logging.getLogger("mlspec.serve")
MAX_BODY_BYTES = 8 * 1024 * 1024
JSON_TYPE = "application/json"


class OnlineResultLike(Protocol):
    @property
    def values(self) -> Mapping[str, Any]: ...

    @property
    def known_entity(self) -> bool: ...


class FeatureSource(Protocol):
    """The online feature path (`mlspec.runtime.online.features.FeatureService`): one entity's
    features as of T from the online store; an entity the store lacks gets the default features."""

    def features(self, model: Model, store: OnlineStore, key: object, as_of: dt.datetime,
                 request: Mapping[str, Any] | None = None) -> OnlineResultLike: ...


@dataclass
class ServeRuntime:
    """One realtime serve block: its schema, its champion holder and its optional shadow."""

    serve: Serve
    model: Model
    schema: RequestSchema
    champion: ChampionHolder
    shadow_model: Model | None = None
    shadow: ChampionHolder | None = None


@dataclass
class Outcome:
    """What a predict call produced: status, JSON payload, and work to run after responding."""

    status: int
    payload: dict[str, Any]
    background: BackgroundTask | None = None


class ServingState:
    """Everything a serving app holds; the HTTP layer is a thin wrapper over `predict`."""

    def __init__(self, spec: Spec, root: Path, store: OnlineStore, features: FeatureSource | None = None, *,
                 registry: Registry | None = None, poll_seconds: float = 0.2, log_dir: Path | None = None,
                 prediction_log: bool = True, cache_rows: int = DEFAULT_CACHE_ROWS) -> None:
        from mlspec.runtime.warehouse import STATE_DIR

        self.spec = spec
        self.root = root
        self.store = store
        self.features: FeatureSource = features or FeatureService(spec, cache_rows)
        self.registry = registry or Registry(root / STATE_DIR / "registry")
        self.metrics = ServingMetrics()
        if isinstance(self.features, FeatureService):
            cache = self.features.cache
            self.metrics.watch_cache(lambda: (cache.hits, cache.misses, cache.rows))
        self.log = PredictionLog(log_dir or root / STATE_DIR / "predictions",
                                 on_drop=self.metrics.log_dropped.inc) if prediction_log else None
        self.holders: dict[str, ChampionHolder] = {}
        self.serves: dict[str, ServeRuntime] = {}
        for s in spec.serves:
            if s.mode != "realtime":
                continue
            model = spec.model(s.model)
            shadow_model = spec.model(s.shadow) if s.shadow else None
            self.serves[s.name] = ServeRuntime(s, model, schema_for(spec, s), self._holder(model),
                                               shadow_model, self._holder(shadow_model) if shadow_model else None)
            if s.latency_p99_ms is not None:
                self.metrics.latency_objective.labels(s.name).set(s.latency_p99_ms / 1000)
        self.watcher = ModelWatcher(list(self.holders.values()), poll_seconds)
        self.started = False

    def _holder(self, model: Model) -> ChampionHolder:
        if model.name not in self.holders:
            self.holders[model.name] = ChampionHolder(self.registry, model.name, model.features, on_swap=self._swapped)
        return self.holders[model.name]

    def _swapped(self, previous: LoadedModel | None, model: LoadedModel) -> None:
        if previous is not None:
            self.metrics.reloads.labels(model.name).inc()
        for rt in self.serves.values():
            if rt.model.name == model.name:
                self.metrics.set_model(rt.serve.name, "champion", model.name, previous.version if previous else None,
                                       model.version)
            if rt.shadow_model is not None and rt.shadow_model.name == model.name:
                self.metrics.set_model(rt.serve.name, "shadow", model.name, previous.version if previous else None,
                                       model.version)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load every champion now, then watch the pointers and start the log writer."""
        if self.started:
            return
        for holder in self.holders.values():
            holder.refresh()
        self.watcher.start()
        if self.log is not None:
            self.log.start()
        self.started = True

    def stop(self) -> None:
        self.watcher.stop()
        if self.log is not None:
            self.log.close()
        self.started = False

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every served champion is loaded and the store answers; shadows are optional."""
        problems: list[str] = []
        models: dict[str, Any] = {}
        for rt in self.serves.values():
            current = rt.champion.current
            if current is None:
                problems.append(f"serve `{rt.serve.name}`: {rt.champion.last_error or 'model not loaded yet'}")
            entry: dict[str, Any] = {"model": rt.model.name, "version": current.version if current else None}
            if rt.champion.last_error:
                entry["error"] = rt.champion.last_error
            if rt.shadow is not None:
                sh = rt.shadow.current
                entry["shadow"] = {"model": rt.shadow.name, "version": sh.version if sh else None,
                                   **({"error": rt.shadow.last_error} if sh is None else {})}
            models[rt.serve.name] = entry
        store_ok, store_detail = self._store_state()
        if not store_ok:
            problems.append(f"online store: {store_detail}")
        if not self.serves:
            problems.append("the spec has no `serve ... { mode = realtime }` block")
        return not problems, {"ready": not problems, "serves": models, "store": store_detail,
                              **({"problems": problems} if problems else {})}

    def _store_state(self) -> tuple[bool, str]:
        """The store answers, and every source the served models read has been materialized."""
        try:
            if not self.store.ping():
                return False, "does not answer"
            models = [rt.model for rt in self.serves.values()]
            missing = [n.namespace for n in source_needs(self.spec, models)
                       if self.store.meta(f"materialized:{n.namespace}") is None and self.store.watermark(n.namespace)
                       is None]
        except Exception as e:
            return False, f"{type(e).__name__}: {e}"
        if missing:
            return False, f"not materialized yet for {', '.join(missing)}: run `mlspec materialize`"
        return True, "ok"

    # ---- prediction --------------------------------------------------------------------------

    def predict(self, name: str, body: bytes, explain: str | None = None) -> Outcome:
        """Validate, compute online features, score; counts metrics and queues the log record(s).

        With a shadow, the log records are written by `Outcome.background` (the shadow scoring),
        which the caller runs after responding; the HTTP layer hands it to Starlette for that.
        """
        t0 = time.perf_counter()
        rt = self.serves.get(name)
        if rt is None:
            hint = did_you_mean(name, self.serves)
            return self._done("", t0, 404, "not_found",
                              {"error": f"no realtime serve block `{name}`" + (f"; {hint}" if hint else ""),
                               "serves": sorted(self.serves)})
        serve = rt.serve.name
        if len(body) > MAX_BODY_BYTES:
            return self.too_large(serve, t0)
        try:
            data = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            return self._done(serve, t0, 400, "bad_request", {"error": f"malformed JSON: {e}"})
        errors: list[FieldError] = []
        if explain not in (None, "features"):
            errors.append(FieldError("explain", f"query parameter must be `features`, not {explain!r}"))
        rows, batch = self._rows(rt.schema, data, errors)
        if errors:
            return self._done(serve, t0, 422, "invalid", _invalid(errors))
        model = rt.champion.current
        if model is None:
            return self._done(serve, t0, 503, "unavailable",
                              {"error": f"no champion of `{rt.model.name}` is loaded: "
                                        f"{rt.champion.last_error or 'starting'}"})
        try:
            values, known, scores = self._score(rt, model, rows)
        except Exception as e:
            if _store_error(e):  # the store went away (Redis down, file gone): retryable, not a bug
                log.warning("online store error for serve `%s`: %s", serve, e)
                return self._done(serve, t0, 503, "unavailable", {"error": f"online store unavailable: {e}"})
            log.exception("prediction for serve `%s` failed", serve)  # a bug: traceback in the log, 500
            return self._done(serve, t0, 500, "internal", {"error": f"internal error: {type(e).__name__}: {e}"})
        outputs = [_output(model, scores, i) for i in range(len(rows))]
        sm = self.metrics.serve(serve)
        sm.predictions.inc(len(rows))
        for i, out in enumerate(outputs):
            sm.prediction_value.observe(float(scores[i] if scores.ndim == 1 else scores[i].max()))
            if None in values[i].values():
                self.metrics.count_nulls(serve, [q for q, v in values[i].items() if v is None])
            if not known[i]:
                sm.unknown_entities.inc()
            out["known_entity"] = known[i]
        results = [{"key": r.key, "as_of": _iso(r.as_of), **out} for r, out in zip(rows, outputs, strict=True)]
        if explain:
            for res, vals in zip(results, values, strict=True):
                res["features"] = {q: vals.get(q) for q in model.encoding.names}
        head = {"serve": serve, "model": model.name, "version": model.version}
        payload = {**head, "predictions": results} if batch else {**head, **results[0]}
        latency = time.perf_counter() - t0
        records = self._records(rt, model, rows, values, outputs, known, latency, batch)
        background = None
        if rt.shadow is not None:
            background = BackgroundTask(self._shadow, rt, rows, values, records)
        elif self.log is not None:
            for rec in records:
                self.log.append(rec)
        return self._done(serve, t0, 200, None, payload, background)

    def too_large(self, name: str, t0: float | None = None) -> Outcome:
        serve = name if name in self.serves else ""
        return self._done(serve, t0 or time.perf_counter(), 413, "bad_request",
                          {"error": f"request body over {MAX_BODY_BYTES // 1024 // 1024} MiB"})

    def _rows(self, schema: RequestSchema, data: object, errors: list[FieldError]) -> tuple[list[RequestRow], bool]:
        batch = isinstance(data, dict) and "instances" in data and "instances" not in schema.names
        if not batch:
            got = schema.validate(data)
            if isinstance(got, list):
                errors.extend(got)
                return [], False
            return [got], False
        assert isinstance(data, dict)
        for extra in data:
            if extra != "instances":
                errors.append(FieldError(extra, "unknown field next to `instances` (a batch is "
                                         "{\"instances\": [row, ...]} and nothing else)"))
        instances = data["instances"]
        if not isinstance(instances, list) or not 1 <= len(instances) <= MAX_BATCH:
            size = f"{len(instances)} rows" if isinstance(instances, list) else type(instances).__name__
            errors.append(FieldError("instances", f"must be an array of 1 to {MAX_BATCH} objects (got {size})"))
            return [], True
        rows: list[RequestRow] = []
        for i, item in enumerate(instances):
            got = schema.validate(item, where=f"instances[{i}].")
            if isinstance(got, list):
                errors.extend(got)
            else:
                rows.append(got)
        return rows, True

    def _score(self, rt: ServeRuntime, model: LoadedModel,
               rows: Sequence[RequestRow]) -> tuple[list[Mapping[str, Any]], list[bool], np.ndarray]:
        values: list[Mapping[str, Any]] = []
        known: list[bool] = []
        for r in rows:
            res = self.features.features(rt.model, self.store, r.key, r.as_of, r.request)
            values.append(res.values)
            known.append(bool(res.known_entity))
        enc = model.encoding
        matrix = encode_row(values[0], enc) if len(values) == 1 else np.vstack([encode_row(v, enc) for v in values])
        return values, known, model.scores(matrix)

    def _records(self, rt: ServeRuntime, model: LoadedModel, rows: Sequence[RequestRow],
                 values: Sequence[Mapping[str, Any]], outputs: Sequence[dict[str, Any]], known: Sequence[bool],
                 latency: float, batch: bool) -> list[Record]:
        if self.log is None and rt.shadow is None:
            return []
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return [{"time": now, "serve": rt.serve.name, "model": model.name, "version": model.version,
                 "key": r.key, "as_of": r.as_of, "request": r.fields or None, "features": v,
                 "prediction": out["prediction"], "known_entity": k, "shadow": None,
                 "latency_seconds": round(latency, 6), "batch_size": len(rows) if batch else None}
                for r, v, out, k in zip(rows, values, outputs, known, strict=True)]

    async def _shadow(self, rt: ServeRuntime, rows: Sequence[RequestRow], values: Sequence[Mapping[str, Any]],
                      records: list[Record]) -> None:
        """Score the shadow model after the response went out; its result only reaches the log."""
        assert rt.shadow is not None and rt.shadow_model is not None
        model = rt.shadow.current
        try:
            if model is None:
                info: list[dict[str, Any]] = [{"model": rt.shadow.name, "version": None, "prediction": None,
                                               "error": rt.shadow.last_error or "not loaded"}] * len(rows)
            else:
                t0 = time.perf_counter()
                needed = model.encoding.names
                shadow_values = [v if all(q in v for q in needed) else
                                 self.features.features(rt.shadow_model, self.store, r.key, r.as_of,
                                                        r.request).values
                                 for r, v in zip(rows, values, strict=True)]
                enc = model.encoding
                scores = model.scores(np.vstack([encode_row(v, enc) for v in shadow_values]))
                spent = round(time.perf_counter() - t0, 6)
                info = [{"model": model.name, "version": model.version, "latency_seconds": spent,
                         **_output(model, scores, i)} for i in range(len(rows))]
        except Exception as e:  # the client already has its answer; a shadow failure is only recorded
            log.exception("shadow scoring for serve `%s` failed", rt.serve.name)
            self.metrics.shadow_errors.labels(rt.serve.name).inc()
            info = [{"model": rt.shadow.name, "version": model.version if model else None, "prediction": None,
                     "error": f"{type(e).__name__}: {e}"}] * len(rows)
        if self.log is not None:
            for rec, sh in zip(records, info, strict=True):
                rec["shadow"] = sh
                self.log.append(rec)

    def _done(self, serve: str, t0: float, status: int, error_kind: str | None, payload: dict[str, Any],
              background: BackgroundTask | None = None) -> Outcome:
        m = self.metrics
        m.count_request("predict", serve, status)
        if error_kind is not None:
            m.errors.labels(serve, error_kind).inc()
        if serve:
            m.serve(serve).latency.observe(time.perf_counter() - t0)
        return Outcome(status, payload, background)


# ---- HTTP --------------------------------------------------------------------------------------

def create_app(state: ServingState) -> Starlette:
    """The ASGI app over a serving state; the lifespan loads models and starts the watcher."""
    openapi = json.dumps(openapi_document(state.spec, list(state.serves.values())), indent=2).encode()

    async def predict(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:  # refuse before reading it
            out = state.too_large(request.path_params["name"])
            return _json(out.status, out.payload)
        try:
            body = await request.body()
        except Exception:  # the client went away mid-body  # pragma: no cover
            return _json(400, {"error": "could not read the request body"})
        out = state.predict(request.path_params["name"], body, request.query_params.get("explain"))
        return _json(out.status, out.payload, out.background)

    async def health(request: Request) -> Response:
        state.metrics.count_request("health", "", 200)
        return _json(200, {"status": "ok"})

    def ready(request: Request) -> Response:  # pings the store, which may hang: run in the threadpool
        ok, detail = state.readiness()
        state.metrics.count_request("ready", "", 200 if ok else 503)
        return _json(200 if ok else 503, detail)

    async def metrics(request: Request) -> Response:
        state.metrics.count_request("metrics", "", 200)
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type=JSON_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.stop()

    routes = [
        Route("/v1/models/{name}/predict", predict, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.serving = state
    return app


def openapi_document(spec: Spec, serves: Sequence[ServeRuntime]) -> dict[str, Any]:
    """OpenAPI 3.1 for the predict endpoints, one path per realtime serve block, schemas from the spec."""
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"},
                                 "errors": {"type": "array", "items": {
                                     "type": "object", "required": ["field", "message"],
                                     "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}}},
    }
    paths: dict[str, Any] = {}
    for rt in serves:
        base = _camel(rt.serve.name)
        names = list(rt.model.features)
        schemas[f"{base}Request"] = rt.schema.json_schema()
        schemas[f"{base}Batch"] = {"type": "object", "required": ["instances"], "additionalProperties": False,
                                   "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH,
                                                                "items": {"$ref": f"#/components/schemas/{base}Request"}}}}
        row: dict[str, Any] = {"type": "object", "required": ["key", "as_of", "prediction", "known_entity"], "properties": {
            "key": rt.schema.key.json_schema(), "as_of": {"type": "string", "format": "date-time"},
            "prediction": {"type": "string" if rt.model.task == "multiclass" else "number",
                           "description": _prediction_doc(rt.model)},
            "known_entity": {"type": "boolean", "description": "false: the entity has no online data and was "
                             "scored on the default features (counts and sums 0, other features null)"},
            "features": {"type": "object", "description": "with ?explain=features: the feature vector used",
                         "properties": {q: {} for q in names}}}}
        schemas[f"{base}Prediction"] = {**row, "properties": {**row["properties"], **_head()},
                                        "required": [*row["required"], "serve", "model", "version"]}
        schemas[f"{base}BatchPrediction"] = {"type": "object", "required": ["serve", "model", "version", "predictions"],
                                             "properties": {**_head(), "predictions": {"type": "array", "items": row}}}
        err = {JSON_TYPE: {"schema": _ref("Error")}}
        paths[f"/v1/models/{rt.serve.name}/predict"] = {"post": {
            "operationId": f"predict_{rt.serve.name}",
            "summary": f"Score with the champion of `{rt.model.name}`"
                       + (f" (shadow: `{rt.shadow_model.name}`, logged only)" if rt.shadow_model else ""),
            "parameters": [{"name": "explain", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["features"]},
                            "description": "include the feature vector used"}],
            "requestBody": {"required": True, "content": {JSON_TYPE: {"schema": {
                "oneOf": [_ref(f"{base}Request"), _ref(f"{base}Batch")]}}}},
            "responses": {
                "200": {"description": "prediction(s)", "content": {JSON_TYPE: {"schema": {
                    "oneOf": [_ref(f"{base}Prediction"), _ref(f"{base}BatchPrediction")]}}}},
                "400": {"description": "malformed JSON", "content": err},
                "404": {"description": "no such realtime serve block", "content": err},
                "422": {"description": "invalid fields; every problem names its field", "content": err},
                "503": {"description": "no champion loaded", "content": err}}}}
    plain = {"200": {"description": "ok"}}
    paths["/health"] = {"get": {"operationId": "health", "summary": "the process is alive", "responses": plain}}
    paths["/ready"] = {"get": {"operationId": "ready", "summary": "models and online store loaded",
                               "responses": {**plain, "503": {"description": "not ready"}}}}
    paths["/metrics"] = {"get": {"operationId": "metrics", "summary": "Prometheus exposition",
                                 "responses": {"200": {"description": "text exposition format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    project = spec.project
    return {"openapi": "3.1.0",
            "info": {"title": f"{project.name} (mlspec serve)", "version": "1",
                     "description": project.description or f"Realtime serve blocks of `{project.name}`"},
            "paths": paths, "components": {"schemas": schemas}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _head() -> dict[str, Any]:
    return {"serve": {"type": "string"}, "model": {"type": "string"},
            "version": {"type": "string", "description": "registry version of the champion that scored"}}


def _prediction_doc(model: Model) -> str:
    return {"binary": "P(positive class)", "regression": "predicted value",
            "multiclass": "most likely class (probabilities in `probabilities`)"}.get(model.task, "score")


def _output(model: LoadedModel, scores: np.ndarray, i: int) -> dict[str, Any]:
    if scores.ndim == 2:
        probs = [float(p) for p in scores[i]]
        best = int(np.argmax(scores[i]))
        label = model.classes[best] if best < len(model.classes) else str(best)
        names = [model.classes[j] if j < len(model.classes) else str(j) for j in range(len(probs))]
        return {"prediction": label, "probabilities": dict(zip(names, probs, strict=True))}
    return {"prediction": float(scores[i])}


def _invalid(errors: Sequence[FieldError]) -> dict[str, Any]:
    details = [e.to_data() for e in errors]
    return {"error": "invalid request: " + "; ".join(d["message"] for d in details), "errors": details}


def _store_error(e: Exception) -> bool:
    return isinstance(e, OSError | sqlite3.Error) or type(e).__module__.split(".")[0] == "redis"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _iso(t: dt.datetime) -> str:
    return t.isoformat()


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_"))


def _json(status: int, payload: Mapping[str, Any], background: BackgroundTask | None = None) -> Response:
    body = to_json(payload)
    return Response(body, status_code=status, media_type=JSON_TYPE, background=background)
