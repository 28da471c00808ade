"""The math verifier's exact-number layer: parser repairs, other readings, equality of numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sympy import E, I, Mul, Rational, UnevaluatedExpr, factorial, log, pi, sin, sqrt, zoo

sys.path.insert(0, str(Path(__file__).parent))
from math_corpus import R  # noqa: E402
from qwq_chat.rl_finetune.verifiers import exact  # noqa: E402
from qwq_chat.rl_finetune.verifiers import math as mv  # noqa: E402


@pytest.mark.parametrize(
    ("latex", "repaired"),
    [
        (r"\lg 100", r"\log_{10} 100"),
        (r"\frac\pi6", r"\frac{\pi}{6}"),
        (r"\dfrac\pi{12}", r"\dfrac{\pi}{12}"),
        (r"\frac12", r"\frac12"),  # math-verify reads this one right
        (r"\sin 30^\circ", r"\sin \left(\frac{\pi}{6}\right)"),
        (r"\cos(22.5^{\circ})", r"\cos(\left(\frac{\pi}{8}\right))"),
        (r"\tan 120°", r"\tan \left(\frac{2\pi}{3}\right)"),
        (r"30^\circ", r"30^\circ"),  # an angle as the answer stays in degrees
        (r"\sinh 30^\circ", r"\sinh 30^\circ"),
        (r"\frac{x}{2}", r"\frac{x}{2}"),
    ],
)
def test_repair_latex(latex: str, repaired: str) -> None:
    assert exact.repair_latex(latex) == repaired


def test_reread_latex_binds_a_logarithm_to_its_number_only() -> None:
    assert exact.reread_latex(r"\ln 8/\ln 2") == r"\ln(8)/\ln 2"
    assert exact.reread_latex(r"\log_2 3 \cdot \log_3 8") == r"\log_2(3) \cdot \log_3 8"
    assert exact.reread_latex(r"\log_{2}{3}\times 5") == r"\log_{2}(3)\times 5"
    assert exact.reread_latex(r"\ln 8") is None
    assert exact.reread_latex(r"\sin 2 \cdot x") is None


@pytest.mark.parametrize(
    ("latex", "expected"),
    [("2i", True), ("3+4i", True), (r"e^{i\pi}", True), (r"\imath", True), (r"\mathrm{i}", True)]
    + [("ii", False), (r"\text{(ii)}", False), (r"\sin x", False), (r"\pi", False)],
)
def test_writes_imaginary_unit(latex: str, expected: bool) -> None:
    assert exact.writes_imaginary_unit(latex) is expected


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        (Rational(0), sqrt(3 + 2 * sqrt(2)) - sqrt(2) - 1, True),
        (Rational(1), (2 + sqrt(5)) ** Rational(1, 3) - (sqrt(5) - 2) ** Rational(1, 3), True),
        (Rational(3), log(8) / log(2), True),
        (Rational(1, 2), sin(pi / 6, evaluate=False), True),
        (-Rational(1), E ** (I * pi), True),
        (1 / factorial(2004), 1 / factorial(2006), False),
        (log(2), log(2) + Rational(1, 10**100), False),
        (Rational(0), Rational(1, 10**70), False),
        (Rational(50), Mul(50, UnevaluatedExpr(Rational(1, 100))), None),  # 50%: not a value
        (Rational(1), zoo, None),
    ],
)
def test_same_number(gold: object, pred: object, expected: bool | None) -> None:
    assert exact.same_number(gold, pred) is expected


def test_normalise_reads_i_and_real_odd_roots_only_where_they_apply() -> None:
    from sympy import Symbol

    i = Symbol("i")
    assert exact.normalise(E ** (i * pi), imaginary=True) == -1
    assert exact.normalise(E ** (i * pi), imaginary=False) == E ** (i * pi)
    x = Symbol("x")
    assert exact.normalise(x + i, imaginary=True) == x + i  # another symbol: i may be an index
    cube_root = exact.normalise(Rational(-8) ** Rational(1, 3))
    assert cube_root == -2
    assert exact.normalise(Rational(-4) ** Rational(1, 2)) == 2 * I  # even roots stay principal


def test_second_look_runs_only_after_not_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> bool:
        raise AssertionError("second look on a match")

    assert mv.score(R + r"\boxed{\frac{\sqrt2}{2}}", r"\frac{1}{\sqrt2}") == 1.0
    monkeypatch.setattr(mv, "_second_look", fail)
    assert mv.score(R + r"\boxed{\frac{\sqrt2}{2}}", r"\frac{1}{\sqrt2}") == 1.0
    with pytest.raises(AssertionError, match="second look"):
        mv.score(R + r"\boxed{e^{i\pi}}", "-1")
