"""Exact versions installed into the image: mlspec's runtime dependencies and theirs.

Kept equal to constraints.txt (tests/backends/test_docker.py checks every pin listed there).
xgboost is replaced by xgboost-cpu: the same `xgboost` module without the ~470 MB NCCL/CUDA
library, so the image installs with `pip install --no-deps` from this list alone.
"""

from __future__ import annotations

PINS: dict[str, str] = {
    "annotated-types": "0.8.0",
    "anyio": "4.16.0",
    "click": "8.5.1",
    "cloudpickle": "3.1.3",
    "duckdb": "2.0.1",
    "h11": "0.16.0",
    "idna": "3.20",
    "jinja2": "3.1.6",
    "joblib": "1.6.0",
    "lark": "1.3.1",
    "markdown-it-py": "4.3.0",
    "markupsafe": "3.0.4",
    "mdurl": "0.1.2",
    "narwhals": "2.29.0",
    "networkx": "3.6.1",
    "numpy": "2.4.6",
    "orjson": "3.13.0",
    "polars": "2.1.0",
    "polars-runtime-32": "2.1.0",
    "prometheus-client": "0.26.0",
    "pyarrow": "26.0.1",
    "pydantic": "2.14.4",
    "pydantic-core": "2.50.5",
    "pygments": "2.21.0",
    "redis": "8.1.0",
    "rich": "15.0.0",
    "scikit-learn": "1.9.1",
    "scipy": "1.17.1",
    "starlette": "1.10.0",
    "threadpoolctl": "3.8.0",
    "typing-extensions": "4.16.0",
    "typing-inspection": "0.4.5",
    "uvicorn": "0.54.0",
    "xgboost-cpu": "3.2.0",
}

PYTHON_IMAGE = "python:3.11-slim-bookworm"
