"""Files -> parsed modules: reads a file or a directory of .mlspec files and follows imports."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mlspec.diagnostics import Diagnostic, MlspecError
from mlspec.syntax import ast
from mlspec.syntax.parse import parse
from mlspec.syntax.span import Span


@dataclass
class Loaded:
    """Every file of one project: its text (for rendering diagnostics) and its module."""

    modules: list[ast.Module] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    root: Path = Path(".")


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        return str(path)


def spec_files(directory: Path) -> list[Path]:
    """The .mlspec files of a directory (not hidden ones, not the .mlspec state folder)."""
    return sorted(f for f in directory.glob("*.mlspec") if f.is_file() and not f.name.startswith("."))


def load(paths: Sequence[str | Path]) -> Loaded:
    """Parse the given files (directories expand to their *.mlspec files, sorted) and their imports."""
    loaded = Loaded()
    queue: list[tuple[Path, Span | None]] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = spec_files(p)
            queue.extend((f, None) for f in files)
            if not files:
                loaded.diagnostics.append(Diagnostic("E180", f"no .mlspec files in {p}", Span(str(p), 0, 0, 0, 0)))
        else:
            queue.append((p, None))
    if paths:
        first = Path(paths[0])
        loaded.root = first if first.is_dir() else first.parent
    seen: set[Path] = set()
    while queue:
        path, origin = queue.pop(0)
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        name = _display(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else (e.strerror or str(e))
            span = origin or Span(name, 0, 0, 0, 0)
            loaded.diagnostics.append(Diagnostic("E180", f"cannot read {name}: {reason}", span))
            continue
        loaded.texts[name] = text
        try:
            module = parse(text, name)
        except MlspecError as e:
            loaded.diagnostics.extend(e.diagnostics)
            continue
        loaded.modules.append(module)
        for item in module.body:
            if isinstance(item, ast.Import):
                queue.append((path.parent / item.path, item.span))
    return loaded
