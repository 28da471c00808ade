r"""Exact numbers for the math verifier: parser repairs, other readings, and equality of numbers.

math-verify misses some answers that are exactly equal to the gold answer:

- An integer or fraction gold answer is compared with the answer's structure, not its value. So
  `\sqrt[3]{2+\sqrt5}+\sqrt[3]{2-\sqrt5}` vs `1` and `\sqrt{3+2\sqrt2}-\sqrt2-1` vs `0` fail.
- Its parser reads a lone `i` as a variable (`e^{i\pi}` vs `-1`), drops degrees (`\sin 30^\circ`
  is read as sin of 30 radians), drops `\lg` (`\lg 100` is read as `100`), garbles `\frac\pi6`, and
  reads `\ln 8 / \ln 2` as `\ln(8/\ln 2)`.
- `\sqrt[3]{-8}` is sympy's principal (complex) root, not -2.

`repair_latex` fixes the text before the first check. When math-verify then says "not equal",
`math.score` takes a second look: other readings (`reread_latex`, `normalise`) and `same_number`,
which decides the equality of two exact numbers from their difference at 60 significant digits.
`numbers_differ` is the same fact used as a guard on math-verify's own numeric matches.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

DIGITS = 60  # significant digits for comparing numbers
DECIMAL_TOLERANCE = 1e-6  # relative, when a side is a decimal (answers rounded by the model)
AGREEMENT_TOLERANCE = 1e-40  # relative: a sanity bound on the values when the difference is ~0

# --- text: parser repairs (always) and other readings (second look only) ------------------------

_TRIG_RE = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![a-zA-Z])")
_DEGREES_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:\^\s*(?:\{\s*\\circ\s*\}|\\circ)|°|\\degree\b)")
_LG_RE = re.compile(r"\\lg(?![a-zA-Z])")
_SYMBOL_CMD = r"\\(?:pi|tau|phi|varphi|theta|alpha|beta|gamma|omega|infty)(?![a-zA-Z])"
_FRAC_ARG = rf"(?:\{{[^{{}}]*\}}|{_SYMBOL_CMD}|[0-9a-zA-Z])"
_FRAC_RE = re.compile(rf"\\([dt]?frac)\s*({_FRAC_ARG})\s*({_FRAC_ARG})")
_LOG_NUMBER_RE = re.compile(
    r"(\\(?:ln|log)(?![a-zA-Z])\s*(?:_\s*(?:\{[^{}]*\}|\w))?)\s*"
    r"(?:\{\s*(\d+(?:\.\d+)?)\s*\}|(\d+(?:\.\d+)?))(?=\s*(?:\\cdot|\\times|\\div|/))"
)


def repair_latex(latex: str) -> str:
    r"""The text with what math-verify's parser misreads written the way it reads correctly.

    `\lg` becomes `\log_{10}`; `\frac\pi6` becomes `\frac{\pi}{6}`; degrees become radians inside
    an expression that has a trigonometric function (`\cos 15^\circ`; a bare `30^\circ` stays 30).
    Unchanged text (the usual case) costs three regex searches.
    """
    if "\\lg" in latex:
        latex = _LG_RE.sub(r"\\log_{10}", latex)
    if "frac" in latex:
        latex = _FRAC_RE.sub(_brace_frac, latex)
    if _TRIG_RE.search(latex):
        latex = _DEGREES_RE.sub(_radians, latex)
    return latex


def reread_latex(latex: str) -> str | None:
    r"""Another reading of the text, or None: a logarithm of a bare number followed by a product or
    quotient takes only that number (`\ln 8/\ln 2` is `\ln(8)/\ln(2)`, which the parser reads as
    `\ln(8/\ln 2)`; `\sin 2x` stays `\sin(2x)`)."""
    reread = _LOG_NUMBER_RE.sub(lambda m: f"{m[1].rstrip()}({m[2] or m[3]})", latex)
    return reread if reread != latex else None


def _brace_frac(m: re.Match[str]) -> str:
    num, den = m[2], m[3]
    if not (re.fullmatch(_SYMBOL_CMD, num) or re.fullmatch(_SYMBOL_CMD, den)):
        return m[0]  # `\frac12`, `\frac{a}{b}`: the parser reads these correctly
    return f"\\{m[1]}{{{num.strip('{}')}}}{{{den.strip('{}')}}}"


def _radians(m: re.Match[str]) -> str:
    turn = Fraction(m[1]) / 180
    num = "" if turn.numerator == 1 else str(turn.numerator)
    return rf"\left(\frac{{{num}\pi}}{{{turn.denominator}}}\right)"


# --- sympy: other readings and equality ----------------------------------------------------------

_IMAGINARY_NAMES = frozenset({"i", "imath"})
_IMAGINARY_RE = re.compile(r"(?<![a-zA-Z\\])i(?![a-zA-Z])|\\imath(?![a-zA-Z])")


def writes_imaginary_unit(latex: str) -> bool:
    r"""Whether `i` stands alone in the text (`2i`, `1+i`, `e^{i\pi}`, `\imath`), not in a word
    (`ii` is a roman numeral, `\sin` a command)."""
    return bool(_IMAGINARY_RE.search(latex))


def normalise(expr: Any, *, imaginary: bool = False) -> Any:
    """`expr` read as a number: with `imaginary`, `i` as the imaginary unit (when it is the only
    symbol, or the only one in the value of `x = value`); an odd root of a negative number as the
    real root (`(-8)^{1/3}` is -2). Returns `expr` when nothing applies or the reading is not a
    valid expression."""
    from sympy import Basic, Eq, I, Interval, Symbol, Tuple

    if not isinstance(expr, Basic):
        return expr
    if isinstance(expr, Eq) and isinstance(expr.lhs, Symbol):
        return Eq(expr.lhs, normalise(expr.rhs, imaginary=imaginary), evaluate=False)
    try:
        read = expr
        symbols = read.free_symbols
        if (
            imaginary
            and symbols
            and all(getattr(s, "name", "") in _IMAGINARY_NAMES for s in symbols)
        ):
            if isinstance(read, Interval) and read.left_open and read.right_open:
                read = Tuple(read.start, read.end)  # `(1, i)` is a pair, not an interval
            read = read.xreplace({s: I for s in symbols})
        return read.replace(_is_odd_root_of_negative, _real_root)
    except (TypeError, ValueError, ArithmeticError):
        return expr


def _is_odd_root_of_negative(e: Any) -> bool:
    return bool(
        e.is_Pow
        and e.exp.is_Rational
        and not e.exp.is_Integer
        and e.exp.q % 2 == 1
        and e.base.is_number
        and e.base.is_extended_negative
    )


def _real_root(e: Any) -> Any:
    from sympy import Integer, Pow

    return Integer(-1) ** e.exp.p * Pow(-e.base, e.exp)


def exact_answers_equal(gold: Any, pred: Any) -> bool:
    """Both answers exact numbers (no decimals; `x = value` counts as the value) and equal."""
    gold, pred = _assigned_value(gold, pred), _assigned_value(pred, gold)
    if not (_is_exact_number(gold) and _is_exact_number(pred)):
        return False
    return same_number(gold, pred) is True


def same_number(gold: Any, pred: Any) -> bool | None:
    """Whether two numbers are equal, or None when a side does not evaluate to a finite number.

    Decided by their difference at 60 significant digits: a nonzero value there means they differ
    (`1/2004!` vs `1/2006!`, `\\ln 2` vs `\\ln 2 + 10^{-100}`). If sympy cannot get a single
    significant digit of it (PrecisionExhausted), it is zero to sympy's maximum working precision,
    well past 60 digits; they are equal if their values also agree (a sanity bound).
    """
    from sympy.core.evalf import PrecisionExhausted

    values = _finite_value(gold), _finite_value(pred)
    if values[0] is None or values[1] is None:
        return None
    try:
        diff = (gold - pred).evalf(DIGITS, strict=True)
    except PrecisionExhausted:
        g, p = values
        return bool(abs(g - p) <= AGREEMENT_TOLERANCE * max(abs(g), abs(p), 1))
    except (TypeError, ValueError, ArithmeticError):
        return None
    return bool(diff == 0)


def numbers_differ(gold: Any, pred: Any) -> bool:
    """True when math-verify matched two numbers that differ beyond its 6-decimal rounding: exact
    values by `same_number`, decimals by 1e-6 relative error (the model rounded)."""
    from sympy import Basic, Float

    if not (isinstance(gold, Basic) and isinstance(pred, Basic)):
        return False
    if not (gold.is_number and pred.is_number):  # sets, intervals, equations, symbolic expressions
        return False
    if not gold.has(Float) and not pred.has(Float):
        return same_number(gold, pred) is False
    g, p = gold.evalf(DIGITS), pred.evalf(DIGITS)
    try:
        scale = max(abs(g), abs(p))
        if scale == 0:
            return False
        return bool(abs(g - p) > DECIMAL_TOLERANCE * scale)
    except TypeError:  # not comparable (nan, zoo, a percentage): trust math-verify
        return False


def _assigned_value(expr: Any, other: Any) -> Any:
    """The value of `x = value` when the other side is not an equation (as math-verify does)."""
    from sympy import Eq, Symbol
    from sympy.core.relational import Relational

    if isinstance(expr, Eq) and isinstance(expr.lhs, Symbol) and not isinstance(other, Relational):
        return expr.rhs
    return expr


def _is_exact_number(expr: Any) -> bool:
    from sympy import Expr, Float

    return isinstance(expr, Expr) and bool(expr.is_number) and not expr.has(Float)


def _finite_value(expr: Any) -> Any:
    """`expr` at 60 digits if it is a finite (complex) number, else None."""
    from sympy import Expr

    if not isinstance(expr, Expr) or not expr.is_number:
        return None
    try:
        value = expr.evalf(DIGITS)
        re_part, im_part = value.as_real_imag()
    except (TypeError, ValueError, ArithmeticError):
        return None
    parts_ok = all(part.is_Number and part.is_finite for part in (re_part, im_part))
    return value if parts_ok else None
