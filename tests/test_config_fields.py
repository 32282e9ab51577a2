"""Every config field is read by the code: an option nobody reads is accepted and silently ignored.

Each leaf field of each config section (the sections of :mod:`ael.config.sections` under
:class:`~ael.config.Config`, and every registered method's section with its sub-sections) must be
read somewhere in ``ael/`` outside ``ael/config`` (``ael/config`` only validates). The source is read
with :mod:`ast`; nothing is imported from the modules scanned, so the test is fast.

A read is an attribute load ``<receiver>.<field>`` whose receiver is known to hold that section,
by a small flow-insensitive type inference over each function:

- a parameter annotated with a section class (``cfg: AELConfig``, ``split_cfg: SplitConfig | None``);
- ``<section>.<sub>`` where ``<sub>`` is a field of that section holding a sub-section
  (``cfg.train`` is a :class:`TrainConfig`, ``cfg.method.bank`` a :class:`BankConfig`);
- a local name, or ``self.<attr>`` of the enclosing class, assigned from a typed expression
  (``train = cfg.train``, ``self.train = train``); names of the enclosing function are seen by
  nested functions;
- ``self.cfg`` in a class whose body says ``config_class = <section>`` (the methods);
- a call of a section class, and ``dataclasses.replace(<typed>, ...)``.

So ``cfg.sampling.enabled`` credits ``SamplingConfig.enabled`` and not ``OhemConfig.enabled``:
removing the one read of a field fails the test even when another section has a field of the same
name. Inherited fields are credited to the class that declares them (``CutMixConfig.fallback_height``
is the same option in ``cutmix_seg`` and ``ael``).

A read the inference cannot see (``getattr(cfg, "x")``, ``dataclasses.fields`` loops, a receiver
without an annotation) needs an entry in :data:`READ_ELSEWHERE` saying where and how it is read;
an entry whose field is already seen by the inference fails, so the list never outlives its reason.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import typing
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import ael.methods  # noqa: F401  (registers the built-in methods' sections)
from ael.config import Config, method_config_class, registered_method_names

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "ael"

# (declaring class, field) -> where and how it is read, for reads the inference does not see.
# Empty: every field is read through a receiver the inference types.
READ_ELSEWHERE: dict[tuple[str, str], str] = {}


# ------------------------------------------------------------------------------------------------
# the config's leaf fields
# ------------------------------------------------------------------------------------------------


def _section_type(owner: type, name: str) -> type | None:
    """The section class a field of ``owner`` holds, or None for a leaf."""
    hint = typing.get_type_hints(owner)[name]
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _declaring_class(cls: type, name: str) -> type:
    """The class whose body declares field ``name`` of ``cls`` (inherited fields: the base)."""
    for klass in reversed(cls.__mro__):
        if name in inspect.get_annotations(klass):
            return klass
    raise AssertionError(f"{cls.__name__}.{name} has no declaring class")


def _roots() -> list[type]:
    """Config's top-level sections and every registered method's section."""
    tops = [t for f in dataclasses.fields(Config) if (t := _section_type(Config, f.name)) is not None]
    return tops + [method_config_class(n) for n in registered_method_names()]


def _walk_sections(cls: type, path: str) -> Iterator[tuple[str, type, str]]:
    """``(dotted path, section class, field)`` of every field under ``cls``, sub-sections included."""
    for f in dataclasses.fields(cls):
        sub = _section_type(cls, f.name)
        if sub is None:
            yield f"{path}.{f.name}", cls, f.name
        else:
            yield from _walk_sections(sub, f"{path}.{f.name}")


def _all_section_classes() -> dict[str, type]:
    """Every section class reachable from the roots, by name (section fields of sections too)."""
    found: dict[str, type] = {}

    def visit(cls: type) -> None:
        for klass in cls.__mro__:
            if dataclasses.is_dataclass(klass) and klass.__name__ not in found:
                found[klass.__name__] = klass
                for f in dataclasses.fields(klass):
                    sub = _section_type(klass, f.name)
                    if sub is not None:
                        visit(sub)

    for root in [Config, *_roots()]:
        visit(root)
    return found


def leaf_fields() -> dict[tuple[str, str], list[str]]:
    """``(declaring class, field)`` -> the dotted config paths it appears at."""
    leaves: dict[tuple[str, str], list[str]] = defaultdict(list)
    for root in _roots():
        for path, cls, name in _walk_sections(root, root.__name__):
            leaves[(_declaring_class(cls, name).__name__, name)].append(path)
    return dict(leaves)


# ------------------------------------------------------------------------------------------------
# the reads in the source
# ------------------------------------------------------------------------------------------------

Types = frozenset[str]
EMPTY: Types = frozenset()


class _Inference:
    """Which expressions hold which section classes, and the typed attribute loads."""

    def __init__(self, classes: dict[str, type]) -> None:
        self.classes = classes
        # class name -> its declared section fields: field -> section class name
        self.sub = {
            name: {f.name: s.__name__ for f in dataclasses.fields(cls) if (s := _section_type(cls, f.name))}
            for name, cls in classes.items()
        }
        self.fields = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in classes.items()}
        self.self_attrs: dict[tuple[str, str], dict[str, Types]] = defaultdict(lambda: defaultdict(lambda: EMPTY))
        self.reads: dict[tuple[str, str], set[str]] = defaultdict(set)

    def annotation(self, node: ast.expr | None) -> Types:
        if node is None:
            return EMPTY
        names: set[str] = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in self.classes:
                names.add(sub.id)
            elif isinstance(sub, ast.Attribute) and sub.attr in self.classes:
                names.add(sub.attr)
            elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                with contextlib.suppress(SyntaxError):
                    names |= self.annotation(ast.parse(sub.value, mode="eval").body)
        return frozenset(names)

    def expr(self, node: ast.expr, env: dict[str, Types], owner: tuple[str, str] | None) -> Types:
        if isinstance(node, ast.Name):
            return env.get(node.id, EMPTY)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and owner is not None:
                own = self.self_attrs[owner].get(node.attr, EMPTY)
                if own:
                    return own
            out = {self.sub[c][node.attr] for c in self.expr(node.value, env, owner) if node.attr in self.sub[c]}
            return frozenset(out)
        if isinstance(node, ast.IfExp):
            return self.expr(node.body, env, owner) | self.expr(node.orelse, env, owner)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in self.classes:
                return frozenset({name})
            if name == "replace" and node.args:
                return self.expr(node.args[0], env, owner)
        return EMPTY

    def scan_module(self, tree: ast.Module, module: str, record: bool) -> None:
        self._scope(tree.body, {}, None, module, record)

    def _scope(self, body: list[ast.stmt], outer: dict[str, Types], owner: tuple[str, str] | None,
               module: str, record: bool, args: ast.arguments | None = None) -> None:
        env: dict[str, Types] = defaultdict(lambda: EMPTY, outer)
        if args is not None:
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                env[a.arg] = self.annotation(a.annotation)
        nested: list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef] = []
        statements: list[ast.AST] = []

        def collect(nodes: list[ast.stmt]) -> None:
            # this scope's statements; nested functions and classes are their own scopes
            for stmt in nodes:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    nested.append(stmt)
                    continue
                statements.append(stmt)
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(stmt, field, None)
                    if isinstance(inner, list):
                        collect([s for s in inner if isinstance(s, ast.stmt)] + [
                            s for h in inner if isinstance(h, ast.ExceptHandler) for s in h.body])
                for case in getattr(stmt, "cases", []):
                    collect(case.body)

        collect(body)
        for _ in range(3):  # assignments in any order: iterate to a fixed point
            for stmt in statements:
                self._assign(stmt, env, owner)
        for stmt in statements:
            for node in self._own_nodes(stmt):
                if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                    for cls in self.expr(node.value, env, owner):
                        if node.attr in self.fields[cls]:
                            declaring = _declaring_class(self.classes[cls], node.attr).__name__
                            if record:
                                self.reads[(declaring, node.attr)].add(f"{module}:{node.lineno}")
        for node in nested:
            if isinstance(node, ast.ClassDef):
                key = (module, node.name)
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                            and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == "config_class"
                            and isinstance(stmt.value, ast.Name) and stmt.value.id in self.classes):
                        self.self_attrs[key]["cfg"] = frozenset({stmt.value.id})
                    elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        typed = self.annotation(stmt.annotation)
                        if typed:
                            self.self_attrs[key][stmt.target.id] |= typed
                self._scope(node.body, dict(env), key, module, record)
            else:
                self._scope(node.body, dict(env), owner, module, record, args=node.args)

    @staticmethod
    def _own_nodes(stmt: ast.AST) -> Iterator[ast.AST]:
        """The nodes of a statement, not descending into nested statements' bodies (scanned on their own)."""
        stack = [stmt]
        while stack:
            node = stack.pop()
            yield node
            for name, value in ast.iter_fields(node):
                if name in ("body", "orelse", "finalbody", "handlers", "cases") and isinstance(node, ast.stmt):
                    continue
                children = value if isinstance(value, list) else [value]
                stack.extend(c for c in children if isinstance(c, ast.AST))

    def _assign(self, stmt: ast.AST, env: dict[str, Types], owner: tuple[str, str] | None) -> None:
        pairs: list[tuple[ast.expr, ast.expr | None, ast.expr | None]] = []
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Tuple) and isinstance(stmt.value, ast.Tuple):
                    pairs += [(t, v, None) for t, v in zip(target.elts, stmt.value.elts)]
                else:
                    pairs.append((target, stmt.value, None))
        elif isinstance(stmt, ast.AnnAssign):
            pairs.append((stmt.target, stmt.value, stmt.annotation))
        for target, value, annotation in pairs:
            typed = (self.expr(value, env, owner) if value is not None else EMPTY) | self.annotation(annotation)
            if not typed:
                continue
            if isinstance(target, ast.Name):
                env[target.id] = env[target.id] | typed
            elif (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                  and target.value.id == "self" and owner is not None):
                self.self_attrs[owner][target.attr] |= typed


def source_reads() -> dict[tuple[str, str], set[str]]:
    """``(declaring class, field)`` -> the ``file:line`` places it is read at, in ``ael/`` outside ``ael/config``."""
    inference = _Inference(_all_section_classes())
    trees = [(str(p.relative_to(ROOT)), ast.parse(p.read_text(encoding="utf-8"), filename=str(p)))
             for p in sorted(SOURCE.rglob("*.py")) if "config" not in p.relative_to(SOURCE).parts[:1]]
    for record in (False, True):  # first pass: learn self.<attr> types across methods
        for module, tree in trees:
            inference.scan_module(tree, module, record)
    return inference.reads


@pytest.fixture(scope="module")
def reads() -> dict[tuple[str, str], set[str]]:
    return source_reads()


# ------------------------------------------------------------------------------------------------
# the tests
# ------------------------------------------------------------------------------------------------


def test_every_config_field_is_read_by_the_code(reads):
    unread = [f"{paths[0]} ({cls}.{name})" for (cls, name), paths in sorted(leaf_fields().items())
              if (cls, name) not in reads and (cls, name) not in READ_ELSEWHERE]
    assert not unread, (
        "config fields accepted but never read in ael/ (outside ael/config), so silently ignored:\n  "
        + "\n  ".join(unread)
        + "\nread each where it takes effect, remove it, or (a read by getattr / dataclasses.fields) list it "
          "in READ_ELSEWHERE with where it is read")


def test_the_allow_list_names_only_fields_the_scan_cannot_see(reads):
    leaves = leaf_fields()
    unknown = [k for k in READ_ELSEWHERE if k not in leaves]
    seen = [f"{k} (read at {sorted(reads[k])[0]})" for k in READ_ELSEWHERE if k in reads]
    assert not unknown, f"READ_ELSEWHERE names fields no section has: {unknown}"
    assert not seen, f"READ_ELSEWHERE entries the scan now sees (remove them): {seen}"


def test_the_scan_knows_the_sections_and_the_fields_the_issue_names(reads):
    leaves = leaf_fields()
    # The roots: model, data, train, run and every registered method.
    paths = {p for ps in leaves.values() for p in ps}
    assert "TrainConfig.log_every" in paths
    assert "AELConfig.cutmix.fallback_height" in paths and "CutMixSegConfig.cutmix.fallback_height" in paths
    assert "DataConfig.split.seed" in paths and "AELConfig.bank.momentum" in paths
    assert len(leaves) > 100
    # A same-named field of another section does not count: the reads are per section.
    assert ("SamplingConfig", "enabled") in reads and ("OhemConfig", "enabled") in reads
    assert any(p.startswith("ael/engine/hooks/reporting.py:") for p in reads[("TrainConfig", "log_every")])
    assert {p.split(":")[0] for p in reads[("CutMixConfig", "fallback_height")]} == {
        "ael/methods/cutmix_seg.py", "ael/methods/ael/method.py"}


def test_the_scan_types_receivers_and_ignores_look_alikes():
    classes = _all_section_classes()
    code = '''
class Hook:
    def __init__(self, train: TrainConfig, other) -> None:
        self.train = train
        self.other = other
    def after(self):
        return self.train.log_every, self.other.media_every

class Thing:
    config_class = AELConfig
    def step(self):
        s = self.cfg.sampling
        def inner():
            return s.gamma2
        return self.cfg.cutmix.fallback_height, getattr(self.cfg.bank, "momentum")

def build(cfg: "Config | None", ohem):
    data = cfg.data if cfg else DataConfig()
    return data.split.seed, ohem.enabled, cfg.method.name
'''
    inference = _Inference(classes)
    tree = ast.parse(code)
    for record in (False, True):
        inference.scan_module(tree, "m.py", record)
    leaves = leaf_fields()
    assert {k for k in inference.reads if k in leaves} == {
        ("TrainConfig", "log_every"), ("SamplingConfig", "gamma2"), ("CutMixConfig", "fallback_height"),
        ("SplitConfig", "seed"), ("MethodConfig", "name")}
