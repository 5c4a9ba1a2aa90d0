"""Vetoes on math-verify's "equal" (each only turns a yes into a no), and input normalisation.

  - numbers: math-verify rounds to 6 decimals, so 1e-7 "equals" 2e-7; we also require a relative
    difference below 1e-6, computed in sympy's arbitrary-exponent floats (Python floats underflow:
    1/2004! and 1/2006! are both 0.0 there);
  - equations: a bare value matches an equation only through its right-hand side when the left side
    names the value (`x = 3`, `f(x) = 1`, `|AB| = 1`, `(p, q) = (3, 2)`, `V_1 : V_2 = 11 : 21`) or is
    a computation without unknowns (`3 + 4 = 7`), not when it is a relation between unknowns
    (`x - y = 0` ~ `0`, `x + z = 1` ~ `1`, `2x = 6` ~ `6`).
"""
from __future__ import annotations

import re

REL_TOL = 1e-6
_PRECISION = 30  # significant digits of the numeric comparison
# "1 000", "1\,000", "12~345": digit groups of three after a space-like separator (a thousands mark)
_SPACED_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\\[,;:! ]|~| )\d{3})+(?![\d.])")
_GROUP_SEPARATOR = re.compile(r"\\[,;:! ]|~| ")
_DECIMAL_COMMA = re.compile(r"-?\d+,(?:\d{1,2}|\d{4,})")  # not 3 digits: "1,000" is a thousands mark
_DECIMAL_POINT = re.compile(r"-?\d+\.\d+")


def join_spaced_thousands(answer: str) -> str:
    """`1 000` -> `1000`: LaTeX reads juxtaposed numbers as a product, so `1 000` would be 1·0 = 0."""
    return _SPACED_THOUSANDS.sub(lambda m: _GROUP_SEPARATOR.sub("", m.group(0)), answer)


def decimal_comma_as_point(answer: str, other: str) -> str:
    """`1000,99` -> `1000.99` when the other side is a decimal with a point (European notation);
    otherwise a comma separates items (`2,5` is the pair 2 and 5) and stays."""
    if _DECIMAL_COMMA.fullmatch(answer.strip()) and _DECIMAL_POINT.fullmatch(other.strip()):
        return answer.replace(",", ".")
    return answer


def as_number(expr):
    """A real constant as a sympy Float of `_PRECISION` digits (any exponent), else None."""
    import sympy

    try:
        if not getattr(expr, "is_number", False) or getattr(expr, "free_symbols", True):
            return None
        real, imag = sympy.N(expr, _PRECISION).as_real_imag()
        if imag != 0 or not real.is_Number or not real.is_finite:
            return None
        return real
    except (TypeError, ValueError, AttributeError):
        return None


def numbers_agree(a, b) -> bool:
    return bool(abs(a - b) <= REL_TOL * max(abs(a), abs(b)))


def names_a_value(expr) -> bool:
    """True for a left side that is a name: symbols combined only by products, ratios, |.|, f(.), tuples."""
    import sympy
    from sympy.core.function import AppliedUndef

    if isinstance(expr, sympy.Symbol):
        return True
    if isinstance(expr, AppliedUndef):  # f(x)
        return all(isinstance(arg, sympy.Symbol) for arg in expr.args)
    if isinstance(expr, (sympy.Abs, sympy.Tuple, sympy.Mul)):  # |AB|, (p, q), AB, NO/BO, V_1 : V_2
        return all(names_a_value(arg) for arg in expr.args)
    if isinstance(expr, sympy.Pow):  # the denominator of a ratio
        return expr.exp == -1 and names_a_value(expr.base)
    return False


def guard_allows(gold, pred) -> bool:
    """False where math-verify is known to say "equal" wrongly for this pair of parsed answers."""
    import sympy

    g_num, p_num = as_number(gold), as_number(pred)
    if g_num is not None and p_num is not None:
        return numbers_agree(g_num, p_num)
    for eq, other in ((gold, pred), (pred, gold)):
        if isinstance(eq, sympy.Eq) and not isinstance(other, sympy.Eq):
            if eq.lhs.free_symbols and not names_a_value(eq.lhs):
                return False
    return True
