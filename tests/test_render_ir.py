"""The IR and its three renderers, node by node."""

from __future__ import annotations

import pytest

from bayesmix.render import ir, latex, markdown, text
from bayesmix.render.ir import Dots, Ident, Matrix, Num, Product, Sum, Symbol, Text, Var


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (223.0, 7, (False, "223", None)),
        (0.0, 7, (False, "0", None)),
        (0.1662317, 7, (False, "0.1662317", None)),
        (0.172739, 7, (False, "0.172739", None)),
        (-3.466743e-05, 7, (True, "3.466743", -5)),
        (0.0001577298, 7, (False, "0.0001577298", None)),
        (-0.016207919, 7, (True, "0.01620792", None)),
        (123456789.0, 7, (False, "123456789", None)),
        (123456789.5, 7, (False, "1.234568", 8)),
    ],
)
def test_split_number(value, digits, expected):
    assert ir.split_number(value, digits) == expected


def test_number_in_each_format():
    n = Num(-3.466743e-05)
    assert latex.node(n) == r"-3.466743 \times 10^{-5}"
    assert text.flat(n) == "-3.466743×10⁻⁵"


def test_ident_rejects_non_alphanumeric():
    with pytest.raises(ValueError):
        Ident("a b")


def test_symbols_and_variables():
    beta = Symbol("beta", (Ident("0"), Ident("j")))
    assert latex.node(beta) == r"\beta_{0j}"
    assert text.flat(beta) == "β_0j"
    n_j = Symbol("n", (Ident("j"),))
    y = Symbol("y", (n_j, Ident("j")))
    assert latex.node(y) == "y_{n_{j}j}"
    assert text.flat(y) == "y_{n_j j}"
    assert latex.node(Symbol("beta", bold=True, hat=True)) == r"\hat{\boldsymbol{\beta}}"
    assert latex.node(Var("X", (Ident("ij"),))) == "X_{ij}"
    assert latex.node(Var("MEANSES", (Ident("j"),))) == r"\text{MEANSES}_{j}"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x_1", r"\text{x\_1}"),
        ("rate%", r"\text{rate\%}"),
        ("a&b", r"\text{a\&b}"),
        ("#n", r"\text{\#n}"),
        ("$", r"\text{\$}"),
        ("{a}", r"\text{\{a\}}"),
        ("a~b^c", r"\text{a\textasciitilde{}b\textasciicircum{}c}"),
        ("back\\slash", r"\text{back\textbackslash{}slash}"),
        ("größe", r"\text{größe}"),
    ],
)
def test_latex_escapes_variable_names(name, expected):
    assert latex.node(Var(name)) == expected


def test_sum_prints_negative_terms_with_minus():
    s = Sum((Num(0.5), Product((Num(-2.0), Var("X"))), Product((Num(-1.0), Var("Z")))))
    assert latex.node(s) == r"0.5 - 2 \cdot X - Z"
    assert text.flat(s) == "0.5 - 2·X - Z"


def test_matrix_with_elision():
    m = Matrix(((Num(1.0), Dots("h"), Num(0.0)), (Dots("v"), Dots("d"), Dots("v")),
                (Num(0.0), Dots("h"), Num(1.0))))
    assert latex.node(m) == (r"\begin{bmatrix} 1 & \cdots & 0 \\ \vdots & \ddots & \vdots \\ "
                             r"0 & \cdots & 1 \end{bmatrix}")
    assert text.box(m).lines == ("⎡1 ⋯ 0⎤", "⎢⋮ ⋱ ⋮⎥", "⎣0 ⋯ 1⎦")
    with pytest.raises(ValueError):
        Matrix(((Num(1.0),), (Num(1.0), Num(2.0))))


def test_text_boxes_align_on_baselines():
    col = Matrix(((Num(1.0),), (Num(2.0),), (Num(3.0),)))
    b = text.box(Product((col, Symbol("beta")), op="juxt"))
    assert b.lines == ("⎡1⎤ ", "⎢2⎥β", "⎣3⎦ ")


def test_markdown_escapes_prose_and_keeps_math():
    nt = ir.Note((Text("rows of *my_data* cost $5: "), Symbol("gamma", (Ident("11"),))))
    assert markdown.note(nt) == r"rows of \*my\_data\* cost \$5: $\gamma_{11}$"


def test_form_renderers_share_the_ir():
    eq = ir.Equation(Symbol("y", (Ident("ij"),)), Sum((Symbol("gamma", (Ident("00"),)),
                                                        Symbol("epsilon", (Ident("ij"),)))),
                     label="L1", notes=(ir.Note((Text("a note"),)),))
    f = ir.FormIR("x", "Title", (eq,))
    assert latex.form(f) == (
        "\\begin{aligned}\n\\text{L1:}\\quad && y_{ij} &= \\gamma_{00} + \\epsilon_{ij} \\\\\n"
        "&& &\\quad \\text{a note}\n\\end{aligned}"
    )
    assert text.form(f) == "L1: y_ij = γ_00 + ε_ij\n           # a note"
    assert markdown.form(f).startswith("**Title**\n\n$$\n\\begin{aligned}")
    assert markdown.form(f).endswith("\n\n- a note")
