"""Where kernels come from: lambdas (alone, several on a line, inside a list literal), IPython
cells, and the exact errors for a plain REPL, exec'd text and '*args' parameters."""
from __future__ import annotations

import inspect
import linecache
import subprocess
import sys

import mlx.core as mx
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl import ZMLXNameError, ZMLXSyntaxError
from conftest import assert_grads, assert_same, rand

FILE = inspect.getsourcefile(lambda: None)
X = rand((3, 8))
VIEW = ("array method 'view' is not supported in kernels: a bit-level reinterpretation has no kernel spelling; "
        "convert values with .astype(dtype)")


def _line(snippet: str) -> tuple[int, str]:
    """This file's first line holding snippet (its number and text)."""
    lines = open(FILE).read().splitlines()
    i = next(i for i, line in enumerate(lines) if snippet in line and "_line(" not in line)
    return i + 1, lines[i]


def _located(snippet: str, message: str, at: str) -> str:
    n, text = _line(snippet)
    col = text.index(at) + 1
    return f"{FILE}:{n}:{col}: {message}\n    {text.rstrip()}\n    {' ' * (col - 1)}^"


def test_a_lambda_is_a_kernel():
    k = zmlx.map_reduce(lambda x: x - x.max(), backend="mlx")
    assert_same(k, lambda x: x - mx.max(x, axis=-1, keepdims=True), X)
    assert_grads(k, lambda x: x - mx.max(x, axis=-1, keepdims=True), X)


def test_lambdas_inside_a_list_literal():
    ks = [zmlx.elementwise(lambda x: x * 3, backend="mlx"), zmlx.map_reduce(lambda x: x / x.sum(), backend="mlx")]
    assert_same(ks[0], lambda x: x * 3, X)
    assert_same(ks[1], lambda x: x / x.sum(-1, keepdims=True), X)


def test_a_lambda_over_several_lines_of_a_list():
    ks = [
        zmlx.map_reduce(lambda x:
                        x - x.max(),
                        backend="mlx"),
    ]
    assert_same(ks[0], lambda x: x - mx.max(x, axis=-1, keepdims=True), X)


def test_two_lambdas_alike_on_one_line():
    a, b = zmlx.elementwise(lambda x: x + 1, backend="mlx"), zmlx.elementwise(lambda x: x + 2, backend="mlx")
    assert_same(a, lambda x: x + 1, X)
    assert_same(b, lambda x: x + 2, X)


def test_a_lambdas_error_is_located():
    k = zmlx.elementwise(lambda x: x.view(mx.int32), backend="mlx")  # error: view
    with pytest.raises(ZMLXNameError) as ei:
        k(X)
    assert str(ei.value) == _located("# error: view", VIEW, "x.view")


def test_star_args_name_the_parameter():
    def star(x, *rest):
        return x

    with pytest.raises(ZMLXSyntaxError) as ei:
        zmlx.elementwise(star)
    assert str(ei.value) == _located("def star(x, *rest)", "'*rest' parameters are not supported in kernels (the "
                                     "kernel is compiled for each argument's shape and type): name each "
                                     "parameter, e.g. def star(x, y, *, eps=1e-5)", "rest")
    with pytest.raises(ZMLXSyntaxError) as ei:
        zmlx.elementwise(lambda x, **options: x)
    assert str(ei.value) == _located("lambda x, **options: x)", "'**options' parameters are not supported in "
                                     "kernels (the kernel is compiled for each argument's shape and type): name "
                                     "each parameter, e.g. lambda x, y: ...", "options")


def test_exec_text_without_source():
    ns: dict = {"zmlx": zmlx}
    with pytest.raises(ZMLXSyntaxError) as ei:
        exec("k = zmlx.elementwise(lambda x: x * 2)", ns)
    assert str(ei.value) == ("cannot read the source of '<lambda>': it was compiled from a string (exec or "
                             "compile(), file name '<string>'), which keeps no source; write it to a file and "
                             "import it, or put the text in linecache.cache under the file name given to "
                             "compile() (as IPython does)")


def test_exec_text_registered_in_linecache_works():
    text = "def f(x):\n    return x * 2\n\ng = lambda x: x + 1\n"
    name = "<zmlx-test-cell-1>"
    linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    try:
        ns: dict = {}
        exec(compile(text, name, "exec"), ns)
        assert_same(zmlx.elementwise(ns["f"], backend="mlx"), lambda x: x * 2, X)
        assert_same(zmlx.elementwise(ns["g"], backend="mlx"), lambda x: x + 1, X)
    finally:
        del linecache.cache[name]


def test_plain_repl():
    script = ("import zmlx_dsl as zmlx\n"
              "def f(x):\n"
              "    return x\n"
              "\n"
              "zmlx.elementwise(f)\n")
    r = subprocess.run([sys.executable, "-i", "-q"], input=script, capture_output=True, text=True, timeout=120)
    assert ("zmlx_dsl.errors.ZMLXSyntaxError: cannot read the source of 'f': it was typed into the Python REPL, "
            "which keeps no source; define kernels in a file (and import it) or in an IPython/Jupyter cell, "
            "which keep theirs") in r.stderr.splitlines()


def test_ipython_cells():
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    cell = ("import mlx.core as mx\n"
            "import zmlx_dsl as zmlx\n"
            "@zmlx.map_reduce(backend='mlx')\n"
            "def cell_softmax(x):\n"
            "    e = mx.exp(x - x.max())\n"
            "    return e / e.sum()\n"
            "ks = [zmlx.elementwise(lambda x: x * 3, backend='mlx')]\n")
    assert shell.run_cell(cell, silent=True).success
    ns = shell.user_ns
    assert_same(ns["cell_softmax"], lambda x: mx.softmax(x, axis=-1), X)
    assert_grads(ns["cell_softmax"], lambda x: mx.softmax(x, axis=-1), X)
    assert_same(ns["ks"][0], lambda x: x * 3, X)
    r = shell.run_cell("@zmlx.elementwise(backend='mlx')\n"
                       "def cell_bad(x):\n"
                       "    return x.view(mx.int32)\n", silent=True)
    assert r.success
    with pytest.raises(ZMLXNameError) as ei:
        ns["cell_bad"](X)
    file = ns["cell_bad"].__wrapped__.__code__.co_filename
    assert str(ei.value) == f"{file}:3:12: {VIEW}\n        return x.view(mx.int32)\n               ^"
