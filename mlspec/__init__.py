"""mlspec: a production ML system declared in one reviewed file.

The stages run in order: `load` (text -> AST), `check_modules` (AST -> typed IR),
`build_dag` (IR -> DAG); `compile_paths` composes them. They are imported on first use,
so `import mlspec.cli` (every command, even `--help`) does not pay for Lark and networkx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlspec.compiler import Compiled, compile_paths

__version__ = "0.1.0"
__all__ = ["Compiled", "__version__", "compile_paths"]


def __getattr__(name: str) -> Any:
    if name in ("Compiled", "compile_paths"):
        from mlspec import compiler

        return getattr(compiler, name)
    raise AttributeError(f"module 'mlspec' has no attribute {name!r}")
