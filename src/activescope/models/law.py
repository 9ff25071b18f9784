"""Parametric laws for hypothesis learning: a mean-function expression and priors on its parameters.

A law is written as a string, e.g. ``"E * (1 + (tpsa / s)**2)"``, over named descriptors (feature
columns) and named parameters, each parameter with a prior such as ``"Gamma(2, 0.05)"``. Both are
parsed once with `ast` into a tree of small closures, checked against a whitelist of nodes and
functions (source is never passed to exec or eval), and evaluated against an array namespace:
the same law runs on torch tensors (MAP fits, with gradients) and on JAX arrays (NUTS).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..engine.errors import SpecError

FUNCTIONS = ("exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "where", "minimum", "maximum")
"""Functions a law may call; `where(cond, a, b)` with a comparison builds piecewise laws."""

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Pow: operator.pow}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}

Node = Callable[[Mapping[str, Callable[..., Any]], Mapping[str, Any]], Any]
"""A compiled expression node: (function namespace, variable values) -> array."""


def _syntax(expression: str, what: str) -> ast.expr:
    try:
        return ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as err:
        raise SpecError(f"{what} {expression!r} does not parse: {err.msg} (column {err.offset})") from None


def _compile(node: ast.expr, names: set[str], expression: str) -> Node:
    """Closure evaluating `node`; records every variable name it reads in `names`."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = float(node.value)
        return lambda ops, env: value
    if isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise SpecError(f"law {expression!r}: {node.id!r} is a function; call it, e.g. {node.id}(x)")
        names.add(node.id)
        key = node.id
        return lambda ops, env: env[key]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        fn, left, right = _BINARY[type(node.op)], _compile(node.left, names, expression), _compile(node.right, names, expression)
        return lambda ops, env: fn(left(ops, env), right(ops, env))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        fn, operand = _UNARY[type(node.op)], _compile(node.operand, names, expression)
        return lambda ops, env: fn(operand(ops, env))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        fn = _COMPARE[type(node.ops[0])]
        left, right = _compile(node.left, names, expression), _compile(node.comparators[0], names, expression)
        return lambda ops, env: fn(left(ops, env), right(ops, env))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in FUNCTIONS:
            raise SpecError(f"law {expression!r}: unknown function {node.func.id!r}; allowed: {', '.join(FUNCTIONS)}")
        key = node.func.id
        args = [_compile(arg, names, expression) for arg in node.args]
        return lambda ops, env: ops[key](*(arg(ops, env) for arg in args))
    text = ast.get_source_segment(expression, node) or type(node).__name__
    raise SpecError(f"law {expression!r}: {text!r} is not allowed (numbers, names, + - * / **, comparisons and {', '.join(FUNCTIONS)})")


# ----- priors --------------------------------------------------------------------------------------

PRIOR_ARGS = {"Normal": 2, "LogNormal": 2, "Gamma": 2, "HalfNormal": 1, "Uniform": 2}
"""Prior families and their argument counts: Normal(loc, scale), LogNormal(loc, scale) (of the
log), Gamma(concentration, rate), HalfNormal(scale), Uniform(low, high)."""


@dataclass(frozen=True)
class Prior:
    """A prior on one law parameter, in the law's units."""

    family: str
    args: tuple[float, ...]

    @property
    def support(self) -> tuple[float, float]:
        """Lower and upper bound of the parameter."""
        if self.family == "Normal":
            return -math.inf, math.inf
        if self.family == "Uniform":
            return self.args
        return 0.0, math.inf

    @property
    def center(self) -> float:
        """A typical value (median or mean), where fits start."""
        a = self.args
        return {
            "Normal": lambda: a[0],
            "LogNormal": lambda: math.exp(a[0]),
            "Gamma": lambda: a[0] / a[1],
            "HalfNormal": lambda: 0.6745 * a[0],
            "Uniform": lambda: 0.5 * (a[0] + a[1]),
        }[self.family]()

    def sample(self, rng: Any) -> float:
        """One draw with a numpy Generator."""
        a = self.args
        return float({
            "Normal": lambda: rng.normal(a[0], a[1]),
            "LogNormal": lambda: math.exp(rng.normal(a[0], a[1])),
            "Gamma": lambda: rng.gamma(a[0], 1.0 / a[1]),
            "HalfNormal": lambda: abs(rng.normal(0.0, a[0])),
            "Uniform": lambda: rng.uniform(a[0], a[1]),
        }[self.family]())

    def torch(self) -> Any:
        """The prior as a torch.distributions object."""
        import torch.distributions as D

        a = [float(v) for v in self.args]
        return {"Normal": D.Normal, "LogNormal": D.LogNormal, "Gamma": D.Gamma, "HalfNormal": D.HalfNormal, "Uniform": D.Uniform}[
            self.family
        ](*a, validate_args=False)

    def numpyro(self) -> Any:
        """The prior as a numpyro.distributions object."""
        import numpyro.distributions as dist

        return getattr(dist, self.family)(*self.args)

    def __str__(self) -> str:
        return f"{self.family}({', '.join(f'{v:g}' for v in self.args)})"


def parse_prior(text: str | float, parameter: str) -> Prior:
    """A prior from text such as ``"Normal(-4, 2)"`` (numbers only as arguments)."""
    what = f"prior of {parameter!r}"
    node = _syntax(str(text), what)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in PRIOR_ARGS):
        raise SpecError(f"{what}: {text!r} is not a prior; write one of {', '.join(f'{k}(...)' for k in PRIOR_ARGS)}")
    family = node.func.id
    args = []
    for arg in node.args:
        sign = -1.0 if isinstance(arg, ast.UnaryOp) and isinstance(arg.op, ast.USub) else 1.0
        arg = arg.operand if isinstance(arg, ast.UnaryOp) and isinstance(arg.op, (ast.USub, ast.UAdd)) else arg
        if not (isinstance(arg, ast.Constant) and type(arg.value) in (int, float)):
            raise SpecError(f"{what}: arguments of {family} must be numbers, got {text!r}")
        args.append(sign * float(arg.value))
    if len(args) != PRIOR_ARGS[family] or node.keywords:
        raise SpecError(f"{what}: {family} takes {PRIOR_ARGS[family]} positional number(s), got {text!r}")
    positive = {"Normal": [1], "LogNormal": [1], "Gamma": [0, 1], "HalfNormal": [0], "Uniform": []}[family]
    if any(args[i] <= 0 for i in positive) or (family == "Uniform" and args[0] >= args[1]):
        raise SpecError(f"{what}: invalid {family} arguments in {text!r}")
    return Prior(family, tuple(args))


# ----- laws ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Law:
    """A parsed mean function: descriptors and parameters it reads, and their priors."""

    expression: str
    descriptors: tuple[str, ...]
    parameters: tuple[str, ...]
    priors: Mapping[str, Prior]
    _root: Node

    def __call__(self, ops: Mapping[str, Callable[..., Any]], values: Mapping[str, Any]) -> Any:
        """The law evaluated with `ops` (e.g. TORCH_OPS) on descriptor arrays and parameter values."""
        return self._root(ops, values)


def parse_law(expression: str, priors: Mapping[str, str | float], descriptors: Sequence[str]) -> Law:
    """Parse and check a law: every name must be a descriptor (feature name) or a parameter with
    a prior, and every prior must name a parameter the law uses. Raises SpecError on one line."""
    root_node = _syntax(expression, "law")
    names: set[str] = set()
    root = _compile(root_node, names, expression)
    parsed = {name: parse_prior(text, name) for name, text in priors.items()}
    clash = sorted(set(parsed) & set(descriptors))
    if clash:
        raise SpecError(f"law {expression!r}: {', '.join(clash)} is both a descriptor and a parameter")
    unknown = sorted(names - set(descriptors) - set(parsed))
    if unknown:
        shown = ", ".join(descriptors[:12]) + (f", ... ({len(descriptors)} in all)" if len(descriptors) > 12 else "")
        raise SpecError(
            f"law {expression!r}: {', '.join(map(repr, unknown))} is neither a descriptor "
            f"({shown or 'none'}) nor a parameter with a prior ({', '.join(parsed) or 'none'})"
        )
    unused = sorted(set(parsed) - names)
    if unused:
        raise SpecError(f"law {expression!r}: prior given for {', '.join(map(repr, unused))}, which the law does not use")
    used_descriptors = tuple(d for d in descriptors if d in names)
    parameters = tuple(p for p in parsed if p in names)
    return Law(expression.strip(), used_descriptors, parameters, parsed, root)


def torch_ops() -> dict[str, Callable[..., Any]]:
    """The law function namespace on torch tensors (Python floats are accepted)."""
    import torch

    def as_tensor(*values: Any) -> list[Any]:
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        floating = [v for v in tensors if v.is_floating_point()]
        dtype = floating[0].dtype if floating else torch.float64
        device = tensors[0].device if tensors else None
        return [v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=dtype, device=device) for v in values]

    def where(cond: Any, a: Any, b: Any) -> Any:
        a, b = as_tensor(a, b, cond)[:2]
        return torch.where(cond, a, b)

    return {
        "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "abs": torch.abs, "sin": torch.sin, "cos": torch.cos,
        "tanh": torch.tanh, "sigmoid": torch.sigmoid, "where": where,
        "minimum": lambda a, b: torch.minimum(*as_tensor(a, b)), "maximum": lambda a, b: torch.maximum(*as_tensor(a, b)),
    }  # fmt: skip


def jax_ops() -> dict[str, Callable[..., Any]]:
    """The law function namespace on JAX arrays (switches JAX to float64, as fits are float64)."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    return {
        "exp": jnp.exp, "log": jnp.log, "sqrt": jnp.sqrt, "abs": jnp.abs, "sin": jnp.sin, "cos": jnp.cos,
        "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "where": jnp.where, "minimum": jnp.minimum, "maximum": jnp.maximum,
    }  # fmt: skip


def numpy_ops() -> dict[str, Callable[..., Any]]:
    """The law function namespace on NumPy arrays (for checks and plots)."""
    import numpy as np

    return {
        "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
        "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)), "where": np.where, "minimum": np.minimum, "maximum": np.maximum,
    }  # fmt: skip
