"""The hand-written stub file of the extension (_core.pyi) declares every name
the compiled module exports, every method of its classes, and nothing more."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import heatcore
from heatcore import _core

STUB = Path(heatcore.__file__).with_name("_core.pyi")


def stub_names() -> tuple[set[str], dict[str, set[str]]]:
    tree = ast.parse(STUB.read_text())
    top: set[str] = set()
    members: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            top.add(node.name)
            members[node.name] = {
                n.name if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) else n.target.id
                for n in node.body
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
            }
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            top.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top.add(node.target.id)
    return top, members


def public(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_stub_declares_every_module_name():
    top, _ = stub_names()
    assert public(_core) == top


def test_stub_declares_every_class_member():
    _, members = stub_names()
    for name, declared in members.items():
        cls = getattr(_core, name)
        assert inspect.isclass(cls)
        runtime = {n for n in vars(cls) if not n.startswith("_")}  # own members, not inherited
        declared = {n for n in declared if not n.startswith("_")}
        assert runtime == declared, f"{name}: missing {runtime - declared}, extra {declared - runtime}"
