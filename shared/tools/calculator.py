"""Safe arithmetic for the ``calculator`` tool: a whitelist walk over Python's AST, never ``eval``.

Only numbers, ``+ - * / // % **``, parentheses, the constants ``pi``, ``e`` and ``tau`` and a
few named math functions are evaluated; a name, attribute, subscript, keyword, lambda or call
of anything else is rejected before any of it runs. Sizes are bounded so no input can take
long: the expression's length, every integer's number of digits, and the exponent of ``**``
(checked *before* the power is computed).

Example:
    >>> evaluate("(89000 * 3) * 0.92")
    245640.0
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

MAX_LENGTH = 500
MAX_DIGITS = 300
MAX_EXPONENT = 10_000
HINT = "write plain arithmetic with numbers, + - * / // % ** and parentheses, e.g. (2 + 3) * 4"

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "log": math.log,
    "log10": math.log10, "exp": math.exp, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "floor": math.floor, "ceil": math.ceil,
}


class CalculatorError(ValueError):
    """The expression is not plain arithmetic, or its result is out of bounds."""


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and abs(value) >= 10**MAX_DIGITS:
        raise CalculatorError(f"the result has more than {MAX_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is too large (or not a number)")
    return value


def _power(base: Any, exponent: Any) -> Any:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponents are limited to {MAX_EXPONENT:,}")
    if isinstance(base, int) and isinstance(exponent, int) and abs(base) > 1 and exponent > 0:
        # Estimate the digits before computing: 9 ** 9999 would be slow to build and to print.
        if exponent * math.log10(abs(base)) >= MAX_DIGITS:
            raise CalculatorError(f"the result has more than {MAX_DIGITS} digits")
    result = base**exponent
    if isinstance(result, complex):
        raise CalculatorError("a negative number to a fractional power has no real result")
    return result


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check_size(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in FUNCTIONS
        and not node.keywords
        and not any(isinstance(arg, ast.Starred) for arg in node.args)
    ):
        args = [_eval(arg) for arg in node.args]
        if node.func.id == "round" and len(args) == 2 and abs(args[1]) > MAX_DIGITS:
            raise CalculatorError(f"round() keeps at most {MAX_DIGITS} digits")
        return _check_size(FUNCTIONS[node.func.id](*args))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise CalculatorError("^ is not a power here; write ** for powers")
    if isinstance(node, ast.Tuple):
        raise CalculatorError("write numbers without thousands separators (89000, not 89,000)")
    if isinstance(node, ast.Name):
        raise CalculatorError(f"unknown name {node.id!r}; known constants: {', '.join(CONSTANTS)}")
    if isinstance(node, ast.Call):
        raise CalculatorError(f"only these functions are allowed: {', '.join(FUNCTIONS)}")
    raise CalculatorError(f"{type(node).__name__} is not allowed")


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression without ``eval``.

    Args:
        expression: Numbers, ``+ - * / // % **``, parentheses, ``pi``/``e``/``tau`` and the
            functions in ``FUNCTIONS`` (``sqrt``, ``round``, ``log`` ...).

    Returns:
        The value, an ``int`` when the arithmetic stayed in integers.

    Raises:
        CalculatorError: The text is not such an expression, divides by zero, is too long,
            or its result is too large; the message says what to change.

    Example:
        >>> evaluate("2 ** 10 + sqrt(16)")
        1028.0
    """
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError(f"the expression is empty; {HINT}")
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalculatorError(f"{expression.strip()!r} is not an arithmetic expression; {HINT}") from None
    try:
        return _eval(tree.body)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("the result is too large") from None
    except RecursionError:
        raise CalculatorError("the expression is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CalculatorError):
            raise
        raise CalculatorError(f"math error: {exc}") from None


def format_number(value: int | float) -> str:
    """Show a result: integers in full, floats to 12 significant digits.

    Example:
        >>> format_number(0.1 + 0.2), format_number(7006652)
        ('0.3', '7006652')
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value) if isinstance(value, int) else f"{value:.12g}"
