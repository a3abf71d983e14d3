"""Every reason code that the control cycle or the optimizer emits has a text.

The codes are found in the source by where they appear: string literals of
the form `head:detail`, and literals given to reason lists (`reasons.append`,
`plan.add`, `reasons=`, `bound_by=`), to condition tuples `(status, reason,
message)` and to the demand estimate's `unknown(...)`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from wva_web.control.models import SampleStatus
from wva_web.dashboard.reasons import reason_text

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [*ROOT.glob("wva_web/control/cycle*.py"), *ROOT.glob("optimizer/*.py")]
)
CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*(?::[a-z0-9_]*)?")
COLON_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*:[a-z0-9_]*")
EMITTER_CALLS = {"unknown"}


def literals(node: ast.AST) -> Iterator[str]:
    """Yield the string literals of an expression, and an f-string's first part."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value
    elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        yield from literals(node.left)
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from literals(element)
    elif isinstance(node, ast.IfExp):
        yield from literals(node.body)
        yield from literals(node.orelse)


def names_reasons(text: str) -> bool:
    return "reason" in text or text.endswith("bound_by") or text in ("plan", "chosen")


def emitted(node: ast.AST) -> Iterator[str]:
    """Yield the literals that this node emits as reason codes."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        if COLON_CODE.fullmatch(node.value):
            yield node.value
    elif isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("append", "add", "extend"):
            if names_reasons(ast.unparse(func.value)):
                for arg in node.args:
                    yield from literals(arg)
        if isinstance(func, ast.Name) and func.id in EMITTER_CALLS:
            for arg in node.args:
                yield from literals(arg)
    elif isinstance(node, ast.keyword) and node.arg and names_reasons(node.arg):
        yield from literals(node.value)
    elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(names_reasons(ast.unparse(target)) for target in targets):
            yield from literals(node.value)
    elif isinstance(node, (ast.Tuple, ast.List)):
        elements = node.elts
        condition = (
            len(elements) == 3
            and isinstance(elements[0], ast.Constant)
            and isinstance(elements[0].value, bool)
        )
        if condition:
            yield from literals(elements[1])
        if any(
            isinstance(e, ast.Starred) and "reason" in ast.unparse(e) for e in elements
        ):
            yield from literals(node)


def emitted_codes() -> dict[str, str]:
    """Map every emitted code to the first file that emits it."""
    codes: dict[str, str] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            for code in emitted(node):
                if CODE.fullmatch(code):
                    codes.setdefault(code, str(path.relative_to(ROOT)))
    return codes


def test_scan_finds_known_codes() -> None:
    codes = emitted_codes()
    for code in ("scale_up:saturated_growth", "no_change", "metrics_ok", "pending:"):
        assert code in codes


@pytest.mark.parametrize("code", sorted(emitted_codes()))
def test_emitted_code_has_text(code: str) -> None:
    assert reason_text(code), f"{code} (from {emitted_codes()[code]}) has no text"


@pytest.mark.parametrize("status", [s.value for s in SampleStatus if s != "ok"])
def test_sample_status_has_text(status: str) -> None:
    # A sample's status becomes the MetricsAvailable condition's reason.
    assert reason_text(status), f"sample status {status} has no text"


def test_saturated_growth_text() -> None:
    assert reason_text("scale_up:saturated_growth").startswith("scale up:")
