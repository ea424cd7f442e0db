"""The type stubs (camux/__init__.pyi) describe what the module has."""

import ast
from pathlib import Path

import camux

STUB = Path(__file__).resolve().parents[1] / "camux" / "__init__.pyi"


def test_stub_names_exist_at_runtime():
    tree = ast.parse(STUB.read_text())
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name == "StreamFormat":
            continue
        cls = getattr(camux, node.name)  # every stubbed class exists
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name not in (
                "__init__", "__buffer__"
            ):
                assert hasattr(cls, item.name), f"{node.name}.{item.name}"
    for name in camux.__all__:
        assert f"class {name}(" in STUB.read_text() or f"class {name}:" in STUB.read_text(), name


def test_public_items_have_docstrings():
    for name in camux.__all__:
        assert getattr(camux, name).__doc__, name
    for cls in (camux.Frame, camux.Subscriber):
        for attr in dir(cls):
            if not attr.startswith("_"):
                assert getattr(cls, attr).__doc__, f"{cls.__name__}.{attr}"
