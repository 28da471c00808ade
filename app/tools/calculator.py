"""An exact calculator on sympy, for the model to call while it thinks.

Why not `sympy.sympify`/`parse_expr`: both `eval` the text. Here the expression is parsed with
Python's `ast` and only a whitelist of node types, names and functions is turned into sympy objects,
so no code ever runs. Decimals become exact rationals (0.1 + 0.2 == 3/10); `^` means power.
"""

from __future__ import annotations

import ast
from typing import Any

import sympy
from qwq_chat.app.tools.base import Tool, ToolError

MAX_EXPRESSION_CHARS = 2000
MAX_EXPONENT = 100_000
MAX_FACTORIAL = 20_000

_CONSTANTS: dict[str, Any] = {
    "pi": sympy.pi,
    "e": sympy.E,
    "E": sympy.E,
    "I": sympy.I,
    "i": sympy.I,
    "oo": sympy.oo,
    "inf": sympy.oo,
}

_FUNCTIONS: dict[str, Any] = {
    name: getattr(sympy, name)
    for name in [
        *("sqrt", "cbrt", "root", "exp", "log", "sin", "cos", "tan", "asin", "acos", "atan"),
        *("atan2", "sinh", "cosh", "tanh", "floor", "ceiling", "Abs", "factorial", "binomial"),
        *("gcd", "lcm", "isprime", "factorint", "divisors", "totient", "mod_inverse", "Rational"),
        *("simplify", "expand", "factor", "N", "nsimplify", "diff", "integrate", "limit", "solve"),
        *("summation", "product", "Min", "Max", "re", "im", "conjugate", "arg", "prime"),
        "nextprime",
    ]
    if hasattr(sympy, name)
}
_FUNCTIONS.update({"abs": sympy.Abs, "ceil": sympy.ceiling, "min": sympy.Min, "max": sympy.Max})
_FUNCTIONS["ln"] = sympy.log

_BINOPS: dict[type, Any] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: sympy.floor(a / b),
    ast.Mod: lambda a, b: sympy.Mod(a, b),
    ast.Pow: lambda a, b: _power(a, b),
    ast.BitXor: lambda a, b: _power(a, b),  # "2^10" means power to people and models
}


def _power(base: Any, exponent: Any) -> Any:
    if exponent.is_number and abs(exponent) > MAX_EXPONENT and base.is_number and abs(base) > 1:
        raise ToolError(f"exponent {exponent} is too large (limit {MAX_EXPONENT})")
    return base**exponent


def _convert(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _convert(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        if isinstance(node.value, bool):
            raise ToolError("booleans are not numbers here")
        text = repr(node.value) if isinstance(node.value, float) else str(node.value)
        return sympy.Rational(text) if isinstance(node.value, float) else sympy.Integer(text)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if len(node.id) <= 2 and node.id.isalpha():
            return sympy.Symbol(node.id)  # a variable for solve/diff/integrate
        raise ToolError(f"unknown name {node.id!r}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_convert(node.left), _convert(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _convert(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
        return sympy.Eq(_convert(node.left), _convert(node.comparators[0]))
    if isinstance(node, (ast.Tuple, ast.List)):
        return sympy.Tuple(*(_convert(e) for e in node.elts))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        func = _FUNCTIONS.get(node.func.id)
        if func is None:
            raise ToolError(f"unknown function {node.func.id!r}")
        args = [_convert(a) for a in node.args]
        if func is sympy.factorial and args and args[0].is_number and args[0] > MAX_FACTORIAL:
            raise ToolError(f"factorial argument too large (limit {MAX_FACTORIAL})")
        return func(*args)
    raise ToolError(f"unsupported syntax: {ast.dump(node)[:60]}")


def evaluate(expression: str) -> str:
    """Evaluate `expression` exactly; returns the exact value and, if not an integer, a decimal."""
    text = expression.strip()
    if not text:
        raise ToolError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"cannot parse {expression!r}: {exc.msg}") from None
    try:
        value = _convert(tree)
    except ToolError:
        raise
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, NotImplementedError) as exc:
        raise ToolError(f"cannot compute {expression!r}: {exc}") from None
    if isinstance(value, sympy.Basic) and value.has(sympy.zoo, sympy.nan):
        raise ToolError(f"{expression!r} is undefined (division by zero?)")
    exact = str(value)
    if isinstance(value, sympy.Basic) and value.is_number and not value.is_Integer:
        approx = sympy.N(value, 15)
        if str(approx) != exact:
            return f"{exact} ≈ {approx}"
    return exact


def calculator_tool() -> Tool:
    return Tool(
        name="calculator",
        description=(
            "Exact arithmetic and algebra with sympy. Examples: '2**100', '(3/7 + 0.1) * 14', "
            "'sqrt(8)', 'factorial(30)', 'gcd(84, 36)', 'solve(x**2 - 2, x)', 'diff(sin(x)*x, x)'."
        ),
        parameters={
            "type": "object",
            "properties": {
                "expression": {"type": "string", "description": "The expression to evaluate."}
            },
            "required": ["expression"],
        },
        run=lambda arguments: evaluate(str(arguments.get("expression", ""))),
    )
