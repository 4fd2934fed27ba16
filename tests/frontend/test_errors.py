"""Bad input: every unsupported construct, unknown name, wrong argument count, bad shape
and non-array argument raises a specific exception; source problems read
`file:line:col: message`, the source line and a caret. The expected text is built from this
file's own line numbers, so the tests assert the exact message."""
from __future__ import annotations

import inspect
import math  # noqa: F401  (bodies below)

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import zmlx_dsl as zmlx
from zmlx_dsl import ZMLXNameError, ZMLXShapeError, ZMLXSyntaxError, ZMLXTypeError
from zmlx_dsl.frontend import library

FILE = inspect.getsourcefile(lambda: None)
X = mx.array([1.0, -2.0, 3.0])


def located(fn, snippet: str, message: str, at: str = "") -> str:
    """The full message for an error on the first line of fn's source holding `snippet`, at the
    column where `snippet` starts (or where the last `at` on that line starts)."""
    lines, first = inspect.getsourcelines(fn)
    i, line = next((i, line) for i, line in enumerate(lines) if snippet in line)
    col = (line.rindex(at) if at else line.index(snippet)) + 1
    text = line.rstrip("\n").rstrip()
    return f"{FILE}:{first + i}:{col}: {message}\n    {text}\n    {' ' * (col - 1)}^"


def line_of(fn, snippet: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if snippet in line)


def check(fn, exc, expected: str, *args):
    k = zmlx.elementwise(fn, backend="mlx")
    with pytest.raises(exc) as ei:
        mx.eval(k(*(args or (X,))))
    assert str(ei.value) == expected
    return ei.value


# ---- unsupported statements and expressions ------------------------------------------------------


def b_while(x):
    while x > 0:
        x = x - 1
    return x


def b_try(x):
    try:
        y = x + 1
    except Exception:
        y = x
    return y


def b_with(x):
    with open("f"):
        y = x
    return y


def b_lambda(x):
    g = lambda a: a * 2  # noqa: E731
    return g(x)


def b_listcomp(x):
    return sum([x * i for i in range(3)])


def b_genexp(x):
    return max(x * i for i in range(3))


def b_dictcomp(x):
    d = {i: x for i in range(2)}
    return d


def b_setcomp(x):
    s = {x * i for i in range(2)}
    return s


def b_nested_def(x):
    def inner(a):
        return a + 1
    return inner(x)


COUNTER = 0


def b_global(x):
    global COUNTER
    return x


def b_nonlocal_outer():
    state = 1.0

    def b_nonlocal(x):
        nonlocal state
        return x * state
    return b_nonlocal


class _Holder:
    value = 1.0


HOLDER = _Holder()


def b_attr_assign(x):
    HOLDER.value = 2.0
    return x


def b_subscript_assign(x):
    x[0] = 1.0
    return x


def b_string(x):
    return x * "2"


def b_fstring(x):
    return f"{x}"


def b_string_compare(x):
    s = "abc"
    return x


def _recurse(a):
    return _recurse(a - 1) + 1


def b_recursion(x):
    return _recurse(x)


def _ping(a):
    return _pong(a) * 2


def _pong(a):
    return _ping(a) + 1


def b_mutual_recursion(x):
    return _ping(x)


def b_walrus(x):
    return (y := x + 1) * y


def b_raise(x):
    raise ValueError("no")


def b_loop_exit(x):
    for i in range(3):
        break
    return x


@pytest.mark.parametrize("fn,snippet,message", [
    (b_while, "while x > 0:", "'while' loops are not supported; use 'for i in range(N)' with a constant N"),
    (b_try, "try:", "'try' is not supported in kernels"),
    (b_with, "with open", "'with' is not supported in kernels"),
    (b_lambda, "lambda a", "lambda expressions are not supported; define a helper function at module level"),
    (b_listcomp, "[x * i", "list comprehensions are not supported in kernels"),
    (b_genexp, "(x * i for", "generator expressions are not supported in kernels"),
    (b_dictcomp, "{i: x", "dict comprehensions are not supported in kernels"),
    (b_setcomp, "{x * i", "set comprehensions are not supported in kernels"),
    (b_nested_def, "def inner", "nested function definitions are not supported; define the helper at module level"),
    (b_global, "global COUNTER", "'global' is not supported; kernels cannot write module state"),
    (b_nonlocal_outer(), "nonlocal state", "'nonlocal' is not supported; kernels cannot write enclosing state"),
    (b_attr_assign, "HOLDER.value", "attribute assignment is not supported in kernels"),
    (b_subscript_assign, "x[0]", "subscript assignment is only supported on a local row of a row body "
                                 "(y = x * 2; y[:4] = 0); an elementwise kernel computes values, it does "
                                 "not write into arrays"),
    (b_string, '"2"', "strings are not supported in kernels"),
    (b_fstring, 'f"{x}"', "strings are not supported in kernels"),
    (b_string_compare, '"abc"', "strings are not supported in kernels"),
    (b_walrus, "y := x", "':=' is not supported in kernels; use an assignment"),
    (b_raise, "raise ValueError", "'raise' is not supported in kernels"),
    (b_loop_exit, "break", "'break' is not supported; loops are unrolled over a constant range"),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_unsupported_construct(fn, snippet, message):
    err = check(fn, ZMLXSyntaxError, located(fn, snippet, message))
    assert isinstance(err, SyntaxError)
    assert err.lineno == line_of(fn, snippet) and err.filename == FILE


def test_recursion():
    msg = "recursive call of '_recurse' (b_recursion -> _recurse -> _recurse); kernels are inlined and cannot recurse"
    check(b_recursion, ZMLXSyntaxError, located(_recurse, "_recurse(a - 1)", msg))
    msg = "recursive call of '_ping' (b_mutual_recursion -> _ping -> _pong -> _ping); kernels are inlined and cannot recurse"
    check(b_mutual_recursion, ZMLXSyntaxError, located(_pong, "_ping(a)", msg))


# ---- names, branches, calls ---------------------------------------------------------------------


def b_undefined_after_if(x):
    if x > 0:
        z = x * 2
    return z


def b_undefined_after_else(x):
    if x > 0:
        pass
    else:
        w = x
    return w + 1


def b_unknown_name(x):
    return x + not_defined_anywhere  # noqa: F821


def b_unknown_function(x):
    return mx.matmul(x, x)


def b_unknown_module_attr(x):
    return mx.no_such_function(x)


def b_misspelt_module_attr(x):
    return mx.sigmod(x)


def b_random(x):
    return x + mx.random.uniform()


def b_fast(x):
    return mx.fast.rms_norm(x, None, 1e-5)


def b_transpose(x):
    return mx.transpose(x)


def b_eye(x):
    return x + mx.eye(3)


def b_math_gamma(x):
    return math.gamma(x)


def b_length(x):
    return len(x)


LAYER = nn.Linear(3, 3)


def b_layer(x):
    return LAYER(x)


def b_misspelt_method(x):
    return x.sqaure()


def b_unknown_method(x):
    return x.view(mx.int32)


def b_intrinsic_arity(x):
    return mx.exp(x, x)


def _two(a, b):
    return a * b


def b_helper_too_many(x):
    return _two(x, x, x)


def b_helper_missing(x):
    return _two(x)


def b_captured_array(x):
    return x + X


def test_variable_undefined_on_one_branch():
    if_line = line_of(b_undefined_after_if, "if x > 0")
    msg = (f"'z' may be undefined here: line {if_line} assigns it only in the 'if' branch; "
           "assign it on both sides of the 'if' (or before it)")
    err = check(b_undefined_after_if, ZMLXNameError, located(b_undefined_after_if, "return z", msg, at="z"))
    assert isinstance(err, NameError)
    if_line = line_of(b_undefined_after_else, "if x > 0")
    msg = (f"'w' may be undefined here: line {if_line} assigns it only in the 'else' branch; "
           "assign it on both sides of the 'if' (or before it)")
    check(b_undefined_after_else, ZMLXNameError, located(b_undefined_after_else, "w + 1", msg))


@pytest.mark.parametrize("fn,exc,snippet,message", [
    (b_unknown_name, ZMLXNameError, "not_defined_anywhere", "name 'not_defined_anywhere' is not defined"),
    (b_unknown_function, ZMLXNameError, "mx.matmul",
     "function 'mlx.core.matmul' is not supported in kernels: a kernel body computes one element "
     "(elementwise) or one row (row kernels), not products of arrays: compute mx.matmul with MLX outside the "
     "kernel and pass its result in"),
    (b_unknown_module_attr, ZMLXNameError, "mx.no_such_function", "module 'mlx.core' has no attribute 'no_such_function'"),
    (b_misspelt_module_attr, ZMLXNameError, "mx.sigmod", "module 'mlx.core' has no attribute 'sigmod' (supported "
     "ones of similar names: mx.sigmoid, mx.sign)"),
    (b_random, ZMLXNameError, "mx.random.uniform", "function 'mlx.core.random.uniform' is not supported in kernels: a "
     "kernel draws no random numbers; draw them with mx.random outside the kernel (mx.random.uniform(shape=x.shape)) "
     "and pass them in"),
    (b_fast, ZMLXNameError, "mx.fast.rms_norm", "function 'mlx.core.fast.rms_norm' is not supported in kernels: "
     "mx.fast.rms_norm is MLX's own kernel; write what it computes in the body (x * mx.rsqrt(mx.mean(x * x) + eps) "
     "* w), or call it outside the kernel"),
    (b_transpose, ZMLXNameError, "mx.transpose", "function 'mlx.core.transpose' is not supported in kernels: a kernel "
     "body sees one element (elementwise) or one row (row kernels): rearrange the axes outside the kernel (pass "
     "mx.moveaxis(x, a, b), x.T, x.reshape(...)), and pick the axis the rows run along with the decorator's axis= "
     "(@zmlx.map_reduce(axis=-2))"),
    (b_eye, ZMLXNameError, "mx.eye", "function 'mlx.core.eye' is not supported in kernels: a kernel body computes one "
     "element (elementwise) or one row (row kernels), not matrices: build mx.eye with MLX outside the kernel and pass "
     "it in (or compare positions in a row body: mx.arange(x.shape[-1]) <= i)"),
    (b_math_gamma, ZMLXNameError, "math.gamma", "function 'math.gamma' is not supported in kernels; the math functions "
     "kernels accept: acos, acosh, asin, asinh, atan, atan2, atanh, ceil, cos, cosh, erf, exp, exp2, expm1, fabs, "
     "floor, isfinite, isinf, isnan, log, log10, log1p, log2, pow, remainder, sin, sinh, sqrt, tan, tanh"),
    (b_length, ZMLXNameError, "len(x)", "function 'len' is not supported in kernels; the builtins kernels accept: abs, "
     "bool, float, int, max, min, pow, range, round; a row's length is x.shape[-1]"),
    (b_layer, ZMLXNameError, "LAYER(x)", "a 'Linear' object is called here; kernels inline plain Python functions "
     "(def or lambda), not other callables (an nn.Module's __call__): write its computation in the body, with the "
     "arrays it holds passed in as arguments (kernel(x, layer.weight))"),
    (b_misspelt_method, ZMLXNameError, "x.sqaure()", "array method 'sqaure' is not supported in kernels (supported "
     "ones of similar names: x.square, x.sqrt); the supported ones are " + ", ".join(library.array_methods())),
    (b_unknown_method, ZMLXNameError, "x.view(mx.int32)", "array method 'view' is not supported in kernels: a "
     "bit-level reinterpretation has no kernel spelling; convert values with .astype(dtype)"),
    (b_intrinsic_arity, ZMLXTypeError, "mx.exp(x, x)", "exp() takes 1 argument (2 given)"),
    (b_helper_too_many, ZMLXTypeError, "_two(x, x, x)", "_two() takes 2 positional arguments but 3 were given"),
    (b_helper_missing, ZMLXTypeError, "_two(x)", "_two() missing required argument 'b'"),
], ids=lambda v: v.__name__ if inspect.isfunction(v) else None)
def test_names_and_calls(fn, exc, snippet, message):
    check(fn, exc, located(fn, snippet, message))


def test_captured_array():
    msg = "'X' is an array captured from outside the kernel; pass it as an argument instead"
    check(b_captured_array, ZMLXTypeError, located(b_captured_array, "return x + X", msg, at="X"))


# ---- call-time errors ----------------------------------------------------------------------------


def add2(x, y):
    return x + y


def test_wrong_argument_count_at_call():
    k = zmlx.elementwise(add2, backend="mlx")
    with pytest.raises(ZMLXTypeError) as ei:
        k(X, X, X)
    assert str(ei.value) == "add2() takes 2 positional arguments but 3 were given"
    with pytest.raises(ZMLXTypeError) as ei:
        k(X)
    assert str(ei.value) == "add2() missing required argument 'y'"
    assert isinstance(ei.value, TypeError)


def test_incompatible_shapes_at_call():
    k = zmlx.elementwise(add2, backend="mlx")
    with pytest.raises(ZMLXShapeError) as ei:
        mx.eval(k(mx.ones((3,)), mx.ones((4,))))
    assert str(ei.value) == "add2: input shapes (3,), (4,) do not broadcast together"
    assert isinstance(ei.value, ValueError)
    with pytest.raises(ZMLXShapeError) as ei:
        mx.eval(k(mx.ones((2, 3)), mx.ones((3, 2))))
    assert str(ei.value) == "add2: input shapes (2, 3), (3, 2) do not broadcast together"


def rowdot(x, y):
    return (x * y).sum()


def test_incompatible_shapes_row_kernel():
    """Rows of different lengths meet in a body as MLX's 1-D arrays do: equal, or one of length 1."""
    k = zmlx.reduce(rowdot, backend="mlx")
    with pytest.raises(ZMLXShapeError) as ei:
        k(mx.ones((2, 3)), mx.ones((2, 4)))
    assert str(ei.value) == located(rowdot, "(x * y)", "mul: rows of lengths 3 and 4 do not broadcast (the rows "
                                    "of a body broadcast as MLX's 1-D arrays: equal lengths, or length 1); slice "
                                    "one to the other's length", at="x * y")


def one(x):
    return x + 1


def test_one_argument_grammar():
    k = zmlx.elementwise(one, backend="mlx")
    with pytest.raises(ZMLXTypeError) as ei:
        k(X, X)
    assert str(ei.value) == "one() takes 1 positional argument but 2 were given"


@pytest.mark.parametrize("bad,kind", [([1.0, 2.0, 3.0], "list"), ((1.0, 2.0), "tuple"), ("abc", "str"),
                                      (None, "NoneType")])
def test_non_array_argument(bad, kind):
    k = zmlx.elementwise(add2, backend="mlx")
    with pytest.raises(ZMLXTypeError) as ei:
        k(bad, X)
    assert str(ei.value) == f"add2(): argument 'x' must be an mx.array or a Python scalar, got {kind}"
    with pytest.raises(ZMLXTypeError) as ei:
        k(X, bad)
    assert str(ei.value) == f"add2(): argument 'y' must be an mx.array or a Python scalar, got {kind}"


def test_numpy_array_argument():
    k = zmlx.elementwise(add2, backend="mlx")
    with pytest.raises(ZMLXTypeError) as ei:
        k(np.ones(3, dtype=np.float32), X)
    assert str(ei.value) == "add2(): argument 'x' is a NumPy array; pass mx.array(x)"


def test_only_scalars():
    k = zmlx.elementwise(add2, backend="mlx")
    with pytest.raises(ZMLXTypeError) as ei:
        k(1.0, 2.0)
    assert str(ei.value) == "add2(): at least one argument must be an mx.array"


def test_not_a_function():
    with pytest.raises(ZMLXTypeError) as ei:
        zmlx.elementwise(abs)
    assert str(ei.value) == "elementwise expects a Python function, got builtin_function_or_method"


def test_unreadable_source():
    ns: dict = {}
    exec("def f(x):\n    return x\n", ns)
    with pytest.raises(ZMLXSyntaxError) as ei:
        zmlx.elementwise(ns["f"])
    assert str(ei.value) == ("cannot read the source of 'f': it was compiled from a string (exec or compile(), "
                             "file name '<string>'), which keeps no source; write it to a file and import it, "
                             "or put the text in linecache.cache under the file name given to compile() (as "
                             "IPython does)")


def test_error_is_raised_from_none():
    """One clean error: no chained internal traceback (raise ... from None)."""
    k = zmlx.elementwise(b_unknown_name, backend="mlx")
    with pytest.raises(ZMLXNameError) as ei:
        k(X)
    assert ei.value.__cause__ is None


def _bump(v):
    v += 1.0
    return v


def _bump_if_positive(v):
    if v > 0:
        v += 1.0
    return v


def operand_then_helper(x):
    return x + _bump(x)


def helper_in_branch(x):
    y = _bump_if_positive(x)
    return x * y


def test_in_place_update_by_a_helper_of_an_operand_already_read():
    """`x + f(x)` with f doing `v += 1`: MLX adds the updated x (the operand is the array object),
    which the kernel cannot reproduce -- a located error, never a different value."""
    check(operand_then_helper, ZMLXSyntaxError, located(
        operand_then_helper, "return x + _bump(x)",
        "an array read in this expression was then updated in place ('+=') by a helper called later "
        "in it, which MLX would see but the kernel cannot; call the helper in its own statement first",
        at="x + _bump(x)"))


def test_in_place_update_of_a_callers_array_inside_a_data_dependent_if():
    check(helper_in_branch, ZMLXSyntaxError, located(
        _bump_if_positive, "v += 1.0",
        "augmented assignment inside a data-dependent 'if' updates, in place, an array the calling "
        "function also holds; write `name = name + ...` to make a new array"))


# ---- indexing in row bodies: bad input ----------------------------------------------------------

ROWS8 = mx.ones((2, 8))
PER_ROW = mx.array([3, 4], dtype=mx.int32)  # one value per row beside ROWS8


def i_data_slice(x, n):
    return x[:n]


def i_float_index(x):
    return x[x]


def i_float_constant_index(x):
    return x[1.5]


def i_two_indices(x):
    return x[1, 2]


def i_new_axis(x):
    return x[None] * 2.0


def i_new_axis_and_slice(x):
    return x[None, 1:]


def i_empty_slice(x):
    return x[5:2]


def i_zero_step(x):
    return x[::0]


def i_split_unequal(x):
    a, b, c = mx.split(x, 3)
    return a * b * c


def i_split_empty_part(x):
    a, b = mx.split(x, [0])
    return a


def i_arange_array(x, n):
    return x * mx.arange(n)


def i_arange_empty(x):
    return x[:1] * mx.arange(3, 3)


def i_concatenate_axis1(x):
    return mx.concatenate([x, x], axis=1)


def i_stack_lengths(x):
    return mx.stack([x, x[:2]], axis=-1).reshape(-1)


def i_roll_array(x, n):
    return mx.roll(x, n)


def i_reshape_2d(x):
    return mx.stack([x, x]).reshape(2, -1)


def i_out_of_bounds(x):
    return x * x[100]


def i_assign_length(x):
    y = x * 1.0
    y[:4] = x
    return y


def i_lengths(x):
    return x[:4] + x


def i_lengths_concatenated(x):
    return mx.concatenate([x, x]) * x


ROW_ERRORS = [
    (i_data_slice, ZMLXSyntaxError, "x[:n]", "slice stop must be a constant integer (the row's shape is static); for "
     "a bound that depends on data, keep the row's length and select: mx.where(mx.arange(x.shape[-1]) < bound, x, 0)"),
    (i_float_index, ZMLXTypeError, "x[x]", "an index array must be of an integer type, got float32; convert it with "
     ".astype(mx.int32)"),
    (i_float_constant_index, ZMLXTypeError, "x[1.5]", "an index must be an integer, got float"),
    (i_two_indices, ZMLXSyntaxError, "x[1, 2]", "2 indices given for a row, which has one axis; index the row with "
     "one slice or index (x[i], x[a:b], x[idx])"),
    (i_new_axis, ZMLXSyntaxError, "x[None]", "x[None] makes a 2-D array; a row body works on 1-D rows (and values "
     "that are one per row); drop the new axis"),
    (i_new_axis_and_slice, ZMLXSyntaxError, "x[None, 1:]", "indexing with None makes a 2-D array; a row body works "
     "on 1-D rows"),
    (i_empty_slice, ZMLXShapeError, "x[5:2]", "the slice [5:2] of a row of length 8 is empty; a kernel's rows "
     "cannot be empty"),
    (i_zero_step, ZMLXShapeError, "x[::0]", "slice step cannot be zero"),
    (i_split_unequal, ZMLXShapeError, "mx.split(x, 3)", "cannot split a row of length 8 into 3 equal parts; give the split "
     "points instead, e.g. mx.split(x, [k])"),
    (i_split_empty_part, ZMLXShapeError, "mx.split(x, [0])", "split() at [0] leaves an empty part of a row of "
     "length 8; a kernel's rows cannot be empty"),
    (i_arange_array, ZMLXSyntaxError, "mx.arange(n)", "mx.arange() bounds must be constant numbers (a row's length "
     "is static); use x.shape[-1] for the row length"),
    (i_arange_empty, ZMLXShapeError, "mx.arange(3, 3)", "mx.arange(3, 3) is empty; a kernel's rows cannot be empty"),
    (i_concatenate_axis1, ZMLXSyntaxError, "mx.concatenate", "concatenate(axis=1): a row body works on 1-D rows, "
     "so only axis 0 or -1 exists here"),
    (i_stack_lengths, ZMLXShapeError, "mx.stack", "stack() needs rows of one length, got lengths [2, 8]"),
    (i_roll_array, ZMLXSyntaxError, "mx.roll(x, n)", "roll() needs a constant integer shift"),
    (i_reshape_2d, ZMLXSyntaxError, "mx.stack", "reshape(2, -1): a row body works on 1-D rows; only reshape(-1) "
     "(flattening) is supported"),
    (i_out_of_bounds, ZMLXShapeError, "x[100]", "index 100 is out of bounds for a row of length 8"),
    (i_assign_length, ZMLXShapeError, "y[:4] = x", "cannot assign a row of length 8 to 4 positions"),
    (i_lengths, ZMLXShapeError, "x[:4] + x", "add: rows of lengths 4 and 8 do not broadcast (the rows of a body "
     "broadcast as MLX's 1-D arrays: equal lengths, or length 1); slice one to the other's length"),
    (i_lengths_concatenated, ZMLXShapeError, "mx.concatenate", "mul: rows of lengths 8 and 16 do not broadcast (the "
     "rows of a body broadcast as MLX's 1-D arrays: equal lengths, or length 1); slice one to the other's length"),
]


@pytest.mark.parametrize("kind", ["map_reduce", "reduce"])
@pytest.mark.parametrize("fn,exc,snippet,message", ROW_ERRORS, ids=[c[0].__name__ for c in ROW_ERRORS])
def test_bad_indexing_in_row_body(fn, exc, snippet, message, kind):
    """Located errors at the kernel's first call (the body is parsed for its argument shapes), the
    same from @zmlx.map_reduce and @zmlx.reduce (they fail before the output is checked)."""
    args = (ROWS8, PER_ROW)[:fn.__code__.co_argcount]
    k = getattr(zmlx, kind)(fn, backend="mlx")
    with pytest.raises(exc) as ei:
        mx.eval(k(*args))
    assert str(ei.value) == located(fn, snippet, message)
    base = {ZMLXSyntaxError: SyntaxError, ZMLXTypeError: TypeError, ZMLXShapeError: ValueError}[exc]
    assert isinstance(ei.value, base)
    if exc is ZMLXSyntaxError:
        assert ei.value.lineno == line_of(fn, snippet) and ei.value.filename == FILE


def e_index(x):
    return x[0] * 2.0


def e_slice(x):
    return x[1:] + x


def e_arange(x):
    return x * mx.arange(3)


def e_slice_assign(x):
    y = x * 2.0
    y[:2] = 0.0
    return y


ELEMENTWISE_INDEX = ("indexing needs a row kernel (@zmlx.map_reduce / @zmlx.reduce): an elementwise body sees "
                     "one element")


@pytest.mark.parametrize("fn,snippet,message", [
    (e_index, "x[0]", ELEMENTWISE_INDEX),
    (e_slice, "x[1:]", ELEMENTWISE_INDEX),
    (e_arange, "mx.arange(3)", "mx.arange() needs a row kernel (@zmlx.map_reduce / @zmlx.reduce); an elementwise "
     "body sees one element"),
    (e_slice_assign, "y[:2]", "subscript assignment is only supported on a local row of a row body "
     "(y = x * 2; y[:4] = 0); an elementwise kernel computes values, it does not write into arrays"),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_indexing_in_elementwise_body(fn, snippet, message):
    check(fn, ZMLXSyntaxError, located(fn, snippet, message))


# ---- a decorator axis= of two axes: refused, with the split into two kernels ------------------------

def test_two_axes_are_two_kernels():
    with pytest.raises(ZMLXSyntaxError) as ei:
        zmlx.map_reduce(b_unknown_name, axis=(-2, -1))
    assert str(ei.value) == (
        "b_unknown_name: map_reduce(axis=(-2, -1)): the rows of a kernel run along one axis; split the body in two "
        "kernels, one per axis: the part over axis -1 as @zmlx.map_reduce(axis=-1) (its body sees one row of that "
        "axis), then what reduces over axis -2 as a second kernel on its output, e.g. @zmlx.reduce(axis=-2) def "
        "pool(y): return y.mean(), called as pool(norm(x, w)); or, for one reduction over both axes together, "
        "flatten them into one row: kernel(x.reshape(*x.shape[:-2], -1))")
    with pytest.raises(ZMLXTypeError) as ei:
        zmlx.reduce(b_unknown_name, axis="rows")
    assert str(ei.value) == "b_unknown_name: axis must be one axis (an int such as -1), got 'rows'"


def _layer_norm(x, w):
    return (x - x.mean()) * mx.rsqrt(x.var() + 1e-5) * w


def _pool(y):
    return y.mean()


def test_the_split_the_message_shows_computes_the_two_axis_body():
    x, w = mx.random.normal((2, 5, 8)), mx.random.normal((8,))
    norm, pool = zmlx.map_reduce(_layer_norm, backend="mlx"), zmlx.reduce(_pool, axis=-2, backend="mlx")
    expected = mx.fast.layer_norm(x, w, None, 1e-5).mean(axis=-2)
    assert pool(norm(x, w)).shape == (2, 8)
    assert mx.allclose(pool(norm(x, w)), expected, atol=1e-5).item()


# ---- MLX's signatures in row bodies: what a wrong call says -----------------------------------------

def r_softmax_three(x):
    return mx.softmax(x, -1, True)


def r_softmax_axis(x):
    return mx.softmax(x, axis=1)


def r_keepdims_int(x):
    return x.sum(-1, keepdims=1)


def r_axes(x):
    return x.sum(axes=-1)


def r_two_axes(x):
    return mx.sum(x, axis=(0, 1))


def r_axis_name(x):
    return mx.mean(x, axis="rows")


def r_finfo_int(x):
    return x + mx.finfo(mx.int32).max


def r_iinfo_float(x):
    return x + mx.iinfo(mx.float16).max


def r_finfo_number(x):
    return x + mx.finfo(3).max


def r_float_of_array(x):
    return float(x)


def r_float_text(x):
    return x + float("infinity and beyond")


def r_norm_fro(x):
    return mx.linalg.norm(x, "fro")


def r_norm_int(x):
    return mx.linalg.norm(x.astype(mx.int32))


def r_clip_keyword(x):
    return mx.clip(x, amin=0.0)


def r_ddof_array(x):
    return mx.var(x, ddof=x)


SIGNATURE_ERRORS = [
    (r_softmax_three, ZMLXTypeError, "mx.softmax", "softmax() takes at most 2 positional arguments (a, axis), 3 given"),
    (r_softmax_axis, ZMLXSyntaxError, "mx.softmax", "softmax(axis=1): the body is MLX code for one row (1-D), where "
     "only axis -1 (or 0, or None) exists; write axis=-1, and choose the axis of the inputs that rows run along with "
     "the decorator's axis= (e.g. @zmlx.map_reduce(axis=1))"),
    (r_keepdims_int, ZMLXTypeError, "x.sum", "sum(): keepdims must be True or False (a constant), got int"),
    (r_axes, ZMLXTypeError, "x.sum", "sum() got an unexpected keyword argument 'axes'"),
    (r_two_axes, ZMLXSyntaxError, "mx.sum", "sum(axis=(0, 1)): a row body reduces over its one row (1-D); reduce over "
     "one of these axes in this kernel (the decorator's axis=, e.g. @zmlx.map_reduce(axis=1)) and over the other in "
     "a second kernel or with MLX"),
    (r_axis_name, ZMLXTypeError, "mx.mean", "mean(): axis must be a constant integer (or None), got str"),
    (r_finfo_int, ZMLXTypeError, "mx.finfo", "mx.finfo(mlx.core.int32): int32 is an integer type; its limits are "
     "mx.iinfo(mlx.core.int32).min and .max"),
    (r_iinfo_float, ZMLXTypeError, "mx.iinfo", "mx.iinfo(mlx.core.float16): float16 is a floating-point type; its "
     "limits are mx.finfo(mlx.core.float16).min and .max"),
    (r_finfo_number, ZMLXTypeError, "mx.finfo", "finfo() takes an MLX dtype (mx.float16, x.dtype), got int"),
    (r_float_of_array, ZMLXSyntaxError, "float(x)", "float() of an array is not supported; use .astype(...)"),
    (r_float_text, ZMLXTypeError, "float(", "float('infinity and beyond'): could not convert string to float: "
     "'infinity and beyond'"),
    (r_norm_fro, ZMLXSyntaxError, "mx.linalg.norm", "norm(ord='fro') is a matrix norm; the body sees one row (1-D): "
     "use a vector norm (ord=None or 2, 1, inf, -inf, 0, or a number)"),
    (r_norm_int, ZMLXTypeError, "mx.linalg.norm", "norm() of an int32 row: MLX's linalg.norm takes floating-point "
     "arrays; convert it first (.astype(mx.float32))"),
    (r_clip_keyword, ZMLXTypeError, "mx.clip", "clip() got an unexpected keyword argument 'amin'"),
    (r_ddof_array, ZMLXTypeError, "mx.var", "var(): ddof must be a constant integer (a Python int), got an array"),
]


@pytest.mark.parametrize("fn,exc,snippet,message", SIGNATURE_ERRORS, ids=[c[0].__name__ for c in SIGNATURE_ERRORS])
def test_mlx_signatures_in_row_bodies(fn, exc, snippet, message):
    k = zmlx.map_reduce(fn, backend="mlx")
    with pytest.raises(exc) as ei:
        mx.eval(k(ROWS8))
    assert str(ei.value) == located(fn, snippet, message)
