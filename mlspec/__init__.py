"""mlspec: a production ML system declared in one reviewed file.

The stages run in order: `load` (text -> AST), `check_modules` (AST -> typed IR),
`build_dag` (IR -> DAG); `compile_paths` composes them.
"""

from mlspec.compiler import Compiled, compile_paths

__version__ = "0.1.0"
__all__ = ["Compiled", "__version__", "compile_paths"]
