"""Transformed and centred variables as math: (X_ij − X̄_·j), (X_ij − X̄_··), log(X_ij) ...

Every renderer draws a variable through :func:`variable_node`, so a plain column stays
``Var(name, sub)`` (an :class:`~bayesmix.render.ir.Indicator` for a categorical level) and a
transformed variable (:mod:`bayesmix.spec.transforms`) is drawn as Raudenbush & Bryk write it:

==================  =====================================
``group(X)``        (X_ij − X̄_·j)
``grand(X)``        (X_ij − X̄_··);  a level-2 W: (W_j − W̄_·)
``mean(X)``         X̄_·j
``log(X + 1)``      log(X_ij + 1)
``I(X^2)``          X_ij²
``scale(X)``        (X_ij − X̄_··)/s_X
``poly(t, 2)`` 1,2  poly_1(t_ij), poly_2(t_ij)
==================  =====================================
"""

from __future__ import annotations

from bayesmix.render import ir
from bayesmix.render.ir import Ident, Indicator, Var
from bayesmix.spec import transforms as tf


def variable_node(name: str, sub: tuple[ir.Node, ...], level: str | None = None) -> ir.Node:
    """A variable with subscript ``sub``; ``level`` is a coded column's level, if any.

    ``level`` is a categorical level (drawn as the indicator [X = level]), the degree of a
    ``poly()`` column (``"1"``), or an ordered factor's contrast (``".L"``, ``"^4"``).
    """
    if tf.is_call(name):
        t = tf.parse_transform(name)
        if isinstance(t.expr, tf.Categorical):
            inner = Var(t.expr.column, sub)
            return inner if level is None else Indicator(inner, level)
        if isinstance(t.expr, tf.Poly):
            if level is None:  # the variable as a whole: poly(t_ij, 2)
                return _node(t.expr, sub)
            return ir.Call(f"poly_{level}", (_node(t.expr.arg, sub),))
        return _node(t.expr, sub)
    if level is not None and (level.startswith(".") or level.startswith("^")):
        return Var(name + level, sub)  # an ordered factor's polynomial contrast column
    var = Var(name, sub)
    return var if level is None else Indicator(var, level)


def _dotted(sub: tuple[ir.Node, ...], every: bool) -> tuple[ir.Node, ...]:
    """The subscript of a mean: the first index (``every``: all indexes) replaced by ·."""
    if not sub:
        return ()
    if len(sub) > 1 or not isinstance(sub[0], Ident):  # (row, j): a matrix row
        return (ir.Dot(),) * len(sub) if every else (ir.Dot(), *sub[1:])
    text = sub[0].text
    if every:
        return (ir.Dot(),) * len(text)
    return (ir.Dot(), Ident(text[1:])) if len(text) > 1 else (ir.Dot(),)


def _has_row(sub: tuple[ir.Node, ...]) -> bool:
    """Whether a subscript names the observation (``ij``, ``ijk`` or a matrix row)."""
    return len(sub) > 1 or (bool(sub) and isinstance(sub[0], Ident)
                            and sub[0].text.startswith(("i", "t")))


def _minus(a: ir.Node, b: ir.Node) -> ir.Node:
    return ir.Paren(ir.Sum((a, ir.Product((ir.Num(-1), b)))))


def _node(node: tf.Node, sub: tuple[ir.Node, ...]) -> ir.Node:
    if isinstance(node, tf.Column):
        return Var(node.name, sub)
    if isinstance(node, tf.Number):
        return ir.Num(node.value)
    if isinstance(node, tf.Arith):
        args = [_node(a, sub) for a in node.args]
        if node.op == "neg":
            return ir.Product((ir.Num(-1), _paren(args[0])))
        a, b = args
        if node.op == "+":
            return ir.Sum((a, b))
        if node.op == "-":
            return ir.Sum((a, ir.Product((ir.Num(-1), _paren(b)))))
        if node.op == "*":
            return ir.Product((_paren(a), _paren(b)))
        if node.op == "/":
            return ir.Frac(a, b)
        return ir.Power(_paren(a), b)
    if isinstance(node, tf.Elementwise):
        inner = _node(node.arg, sub)
        if node.fn == "I":
            return inner
        if node.fn == "sqrt":
            return ir.Sqrt(inner)
        return ir.Call(node.fn, (inner,))
    if isinstance(node, tf.Centre):
        x = _node(node.arg, sub)
        if node.kind == "grand":
            return _minus(x, ir.Bar(_node(node.arg, _dotted(sub, True))))
        if node.kind == "group" or _has_row(sub):
            mean = ir.Bar(_node(node.arg, _dotted(sub, False)))
        else:  # mean(X) in a level-2 equation: X̄_·j, the dot for X's own level
            mean = ir.Bar(_node(node.arg, (ir.Dot(), *sub)))
        return _minus(x, mean) if node.kind == "group" else mean
    if isinstance(node, tf.Scale):
        x = _node(node.arg, sub)
        if node.center:
            x = _minus(x, ir.Bar(_node(node.arg, _dotted(sub, True))))
        if node.scale:
            return ir.Frac(x, ir.Symbol("s", (Ident(tf.to_text(node.arg)),)))
        return x
    if isinstance(node, tf.Poly):
        return ir.Call("poly", (_node(node.arg, sub), ir.Num(node.degree)))
    return Var(node.column, sub)


def _paren(node: ir.Node) -> ir.Node:
    return ir.Paren(node) if isinstance(node, ir.Sum) else node
