"""Docker target: one image for serving and for the pipeline jobs of a spec.

The build context is the directory `mlspec compile` ran in (the repository): the image installs
pinned requirements (xgboost-cpu) with --no-deps, then mlspec from source, copies the spec in,
and runs as a non-root user. At start the entrypoint lays the spec into the writable workspace
and fetches the model registry ($MLSPEC_REGISTRY_URL) before running the command.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlspec.backends import BackendError
from mlspec.backends.common import Context, dns_label, header, make_context, path
from mlspec.backends.docker.pins import PINS, PYTHON_IMAGE

if TYPE_CHECKING:
    import networkx as nx

    from mlspec.ir.spec import Spec

PORT = 8080
USER_ID = 10001
SPEC_DIR = "/opt/mlspec/spec"
WORKSPACE = "/workspace"


class DockerBackend:
    name = "docker"
    description = "Dockerfile (slim, non-root, pinned, HEALTHCHECK), requirements, entrypoint, .dockerignore"
    options: Mapping[str, str] = {
        "out_dir": "",  # where these files are written, relative to the build context (set by `mlspec compile`)
        "python_image": PYTHON_IMAGE,
    }

    def generate(self, spec: Spec, dag: nx.DiGraph, spec_path: str, options: Mapping[str, str]) -> dict[str, str]:
        ctx = make_context(spec, dag, spec_path)
        stem = posixpath.splitext(posixpath.basename(spec_path))[0] or ctx.project
        out_dir = path(options["out_dir"] or f"generated/{stem}/docker", "option out_dir")
        image = options["python_image"]
        if not all(c.isalnum() or c in "._:/@-" for c in image):
            raise BackendError(f"option python_image={image!r} is not an image reference")
        specs = [(path(posixpath.normpath(posixpath.join(ctx.root_dir, f)), "spec file"), path(f, "spec file"))
                 for f in (spec.files or (ctx.spec_arg,))]
        top = header(ctx, self.name)
        return {
            "Dockerfile": top + dockerfile(ctx, out_dir, specs, image),
            "Dockerfile.dockerignore": top + dockerignore(out_dir, specs),
            "requirements.txt": top + "".join(f"{name}=={version}\n" for name, version in sorted(PINS.items())),
            "entrypoint.sh": "#!/bin/sh\n" + top + ENTRYPOINT,
            "fetch_model.py": top + FETCH_MODEL,
        }


def copied_files(text: str) -> list[str]:
    """The build-context sources of every COPY in a Dockerfile (tests check that they exist)."""
    out: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            out.extend(w for w in words[1:-1] if not w.startswith("--"))
    return out


def dockerfile(ctx: Context, out_dir: str, specs: list[tuple[str, str]], python_image: str) -> str:
    realtime = any(s.mode == "realtime" for s in ctx.spec.serves)
    tag = f"mlspec-{dns_label(ctx.project)}:{ctx.fingerprint[:12]}"
    if realtime:
        cmd = ["mlspec", "serve", ctx.spec_arg, "--host", "0.0.0.0", "--port", str(PORT)]
        health = ("HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \\\n"
                  "  CMD [\"python\", \"-c\", \"import urllib.request; "
                  f"urllib.request.urlopen('http://127.0.0.1:{PORT}/health', timeout=2)\"]\n")
    else:
        cmd = ["mlspec", "run", ctx.spec_arg]
        health = "HEALTHCHECK NONE\n"
    copy_specs = "".join(f"COPY {src} {SPEC_DIR}/{dest}\n" for src, dest in specs)
    return f"""# Build from the directory `mlspec compile` ran in (the build context), with BuildKit:
#   docker build -f {out_dir}/Dockerfile -t {tag} .
# One image for `mlspec serve` (the default command) and the pipeline jobs (`mlspec run ...`).
ARG PYTHON_IMAGE={python_image}

FROM ${{PYTHON_IMAGE}} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY {out_dir}/requirements.txt /tmp/requirements.txt
# every dependency is pinned in requirements.txt, so nothing else (no CUDA xgboost) comes in
RUN python -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-deps -r /tmp/requirements.txt
COPY pyproject.toml README.md /src/
COPY mlspec /src/mlspec
RUN /opt/venv/bin/pip install --no-deps /src

FROM ${{PYTHON_IMAGE}}
RUN groupadd --system --gid {USER_ID} mlspec \\
 && useradd --system --uid {USER_ID} --gid {USER_ID} --home-dir {WORKSPACE} --no-create-home mlspec \\
 && mkdir -p {WORKSPACE} && chown {USER_ID}:{USER_ID} {WORKSPACE}
COPY --from=build /opt/venv /opt/venv
{copy_specs}COPY {out_dir}/entrypoint.sh {out_dir}/fetch_model.py /opt/mlspec/
ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    MLSPEC_WORKSPACE={WORKSPACE} \\
    MLSPEC_SPEC_FINGERPRINT={ctx.fingerprint}
USER {USER_ID}:{USER_ID}
WORKDIR {WORKSPACE}
EXPOSE {PORT}
{health}ENTRYPOINT ["/bin/sh", "/opt/mlspec/entrypoint.sh"]
CMD {json.dumps(cmd)}
"""


def dockerignore(out_dir: str, specs: list[tuple[str, str]]) -> str:
    allowed = ["pyproject.toml", "README.md", "mlspec", *(src for src, _ in specs),
               f"{out_dir}/requirements.txt", f"{out_dir}/entrypoint.sh", f"{out_dir}/fetch_model.py"]
    return ("# BuildKit reads <Dockerfile>.dockerignore next to the Dockerfile: only what the image needs is sent.\n"
            "*\n" + "".join(f"!{a}\n" for a in allowed) + "**/__pycache__\n**/*.pyc\n**/.mlspec\n")


ENTRYPOINT = f"""# Every container of the image starts here: it lays the spec into the writable workspace,
# fetches the model registry when $MLSPEC_REGISTRY_URL names one, then runs the command.
set -eu
workspace="${{MLSPEC_WORKSPACE:-{WORKSPACE}}}"
mkdir -p "$workspace"
cp -R {SPEC_DIR}/. "$workspace/"
if [ -n "${{MLSPEC_REGISTRY_URL:-}}" ]; then
  python /opt/mlspec/fetch_model.py "$MLSPEC_REGISTRY_URL" "$workspace/.mlspec/registry"
fi
cd "$workspace"
exec "$@"
"""

FETCH_MODEL = '''"""Fetch the model registry before the server starts: `fetch_model.py URL DEST`.

URL is file:///dir (a mounted volume holding a registry folder) or http(s)://... (a .tar.gz of
one). The copy lands in a temporary folder first and replaces DEST in one rename.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path


def fetch(url: str, dest: Path) -> str:
    parsed = urllib.parse.urlparse(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=dest.parent))
    target = staging / "registry"
    try:
        if parsed.scheme == "file":
            source = Path(urllib.parse.unquote(parsed.path))
            if not source.is_dir():
                return f"no registry at {source}: starting without a model (/ready answers 503)"
            shutil.copytree(source, target, symlinks=False)
        elif parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(url, timeout=120) as response, tempfile.TemporaryFile() as archive:
                shutil.copyfileobj(response, archive)
                archive.seek(0)
                with tarfile.open(fileobj=archive, mode="r:*") as tar:
                    tar.extractall(target, filter="data")
        else:
            raise SystemExit(f"fetch_model: unsupported URL scheme {parsed.scheme!r} (file, http, https)")
        if dest.exists():
            shutil.rmtree(dest)
        target.rename(dest)
        return f"model registry fetched into {dest}"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: fetch_model.py URL DEST")
    print("fetch_model:", fetch(sys.argv[1], Path(sys.argv[2])), file=sys.stderr)
'''

BACKEND = DockerBackend()
