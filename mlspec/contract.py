"""Names shared by the runtime commands and the generated targets: exit codes and environment variables.

A target writes these into the files it generates (a Job's failure policy, a container's env, a DAG's
command) and the runtime reads or returns them, so each is defined here once. Plain constants only:
both sides import this module without pulling in the other.
"""

from __future__ import annotations

# `mlspec run --fail-on-rejected` / `mlspec retrain`: a gate node rejected its candidate (1 is a failed run)
EXIT_REJECTED = 3

# where `mlspec stream` reads the streams' Redis URL from when --redis is not given
STREAM_URL_ENV = "MLSPEC_STREAM_URL"

# the Pushgateway URL generated monitor jobs pass to `mlspec monitor --pushgateway`
PUSHGATEWAY_ENV = "MLSPEC_PUSHGATEWAY_URL"
