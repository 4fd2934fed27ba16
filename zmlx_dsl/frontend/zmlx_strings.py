"""ZMLX C-expression strings to IR: elementwise bodies and their given VJPs, row reductions (parallel or serial folds)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import mlx.core as mx

from ..errors import Location, ZMLXSyntaxError, ZMLXTypeError
from ..ir import dtypes as dt
from ..ir.build import apply, cast, const, fold
from ..ir.node import Lambda, Node, leaves, toposort
from ..ir.passes import optimize, widen
from ..ir.rows import per_row
from ..ir.program import Program
from . import cexpr

Builder = Callable[[list[Node]], list[Node]]  # a kernel body: its input nodes -> its outputs
# a given VJP: (inputs, outputs) -> the VJP program and what feeds each of its inputs (runtime.GivenVJP)
VJPBuilder = Callable[[list[Node], list[Node]], tuple[Program, list]]


# ---- parsing helpers ---------------------------------------------------------------------------

def _compute(compute: Any) -> dt.DType:
    """The compute dtype (ZMLX's `T`): the given MLX dtype, float32 when none."""
    return dt.from_mx(compute or mx.float32)


def _types(compute: Any) -> dict:
    return {"T": _compute(compute)}


def _parse(text: str, env: Mapping[str, Any], compute: Any, where: str, header: str) -> Any:
    return cexpr.parse(text, env, types=_types(compute), file=f"<{where}>", header=header)


def _out_dtype(inputs: list[Node]) -> Optional[dt.DType]:
    """ZMLX writes outputs in the input type (its `O`): the promoted float input type."""
    d = inputs[0].dtype
    for n in inputs[1:]:
        d = dt.promote(d, n.dtype)
    return d if d.is_float else None


def _finish(value: Any, inputs: list[Node], what: str, text: str, name: str) -> Node:
    if not isinstance(value, Node) or not leaves([value], "input"):
        raise ZMLXTypeError(f"{what} of '{name}' does not depend on any input ({text!r}); a kernel "
                            "output must read at least one array", Location(f"<{name} {what}>", 1, 1, text))
    target = _out_dtype(inputs)
    return cast(value, target) if target is not None else value


def _is_raw(texts: Sequence[tuple[str, str, bool]], names: Sequence[str], compute: Any, header: str) -> Optional[str]:
    """The reason the strings need Metal (None when every one parses as the portable subset).
    texts: (text, where, is_prelude); malformed strings raise ZMLXSyntaxError here, at definition."""
    env: dict = {n: Node("input", (), dt.float32, n) for n in names}
    for text, where, is_prelude in texts:
        try:
            if is_prelude:
                env = cexpr.parse_prelude(text, env, types=_types(compute), file=f"<{where}>", header=header)
            elif text:
                _parse(text, env, compute, where, header)
        except cexpr.RawMetal as e:
            return f"{where}: {e.message}"
    return None


# ---- elementwise -------------------------------------------------------------------------------

def raw_reason(name: str, arg_names: Sequence[str], fwd: str, grads: Optional[Sequence[str]], *,
               prelude: str, use_output: bool, compute: Any, header: str) -> Optional[str]:
    """Why an elementwise op's strings need Metal (None when they parse as the portable subset):
    `fwd` over `arg_names`, and the `grads` (after `prelude`) over them, `y` (use_output) and `g`."""
    grad_names = list(arg_names) + (["y"] if use_output else []) + ["g"]
    texts = [(fwd, f"{name} expr", False), (prelude, f"{name} grad_prelude", True)]
    texts += [(g, f"{name} grad_expr", False) for g in grads or ()]
    return _is_raw(texts[:1], arg_names, compute, header) or \
        (grads and _is_raw(texts[1:], grad_names, compute, header)) or None


def pointwise_body(name: str, arg_names: Sequence[str], fwd: str, *, compute: Any, header: str) -> Builder:
    """The body of an elementwise op: `fwd` over the inputs named `arg_names`."""
    def build(inputs: list[Node]) -> list[Node]:
        env = dict(zip(arg_names, inputs))
        return [_finish(_parse(fwd, env, compute, f"{name} expr", header), inputs, "expr", fwd, name)]
    return build


def pointwise_vjp(name: str, arg_names: Sequence[str], grads: Sequence[str], *, prelude: str,
                  use_output: bool, compute: Any, header: str) -> VJPBuilder:
    """The given VJP of an elementwise op: one `grads` string per input, over the inputs, `g`, `y`
    (use_output) and the `prelude`'s declarations; only what the strings read feeds the program."""
    def given(inputs: list[Node], outs: list[Node]) -> tuple[Program, list]:
        y = Node("input", (), outs[0].dtype, "y")
        g = Node("input", (), outs[0].dtype, "g")
        env = {**dict(zip(arg_names, inputs)), "g": g, **({"y": y} if use_output else {})}
        env = cexpr.parse_prelude(prelude, env, types=_types(compute), file=f"<{name} grad_prelude>", header=header)
        ds = [_finish(_parse(text, env, compute, f"{name} grad_expr", header), [x], "grad_expr", text, name)
              for text, x in zip(grads, inputs)]
        ds = [cast(d, x.dtype) for d, x in zip(ds, inputs)]
        ds = optimize(widen(optimize(ds), _compute(compute)))
        used = set(leaves(ds, "input"))
        roles = [(("x", i), x) for i, x in enumerate(inputs) if x in used] + \
                [((r, 0), n) for r, n in (("y", y), ("g", g)) if n in used]
        prog = Program(name + "_vjp", "elementwise", tuple(n for _, n in roles), (), tuple(ds))
        return prog, [r for r, _ in roles]
    return given


# ---- row reductions ----------------------------------------------------------------------------

_COMBINE = {"add": "sum", "sub": "sum", "maximum": "max", "minimum": "min"}


def _strip(n: Node) -> Node:
    return n.args[0] if n.op == "cast" else n


def _accumulate(update: str, init: str, acc_names: Sequence[str], env: dict, compute: Any,
                where: str, header: str) -> tuple[Node, str]:
    """The row's accumulated value and how it is computed. For `update` = `acc ⊕ f(...)` with an
    associative ⊕ (+, -, max, min): `init ⊕ reduce(f)`, a parallel reduction ("sum"/"max"/"min").
    Any other update (e.g. `acc * 0.5f + v`, `acc * v`): a serial fold over the row ("serial")."""
    ct = _compute(compute)
    acc = Node("input", (), ct, "__acc")
    u = _parse(update, {**env, **{a: acc for a in acc_names}}, compute, f"{where} update", header)
    start = _parse(init, {}, compute, f"{where} init", header)
    if isinstance(start, Node) and leaves([start], "input"):
        raise ZMLXSyntaxError(f"init must be a constant, got {init!r}", Location(f"<{where} init>", 1, 1, init))
    start = cast(start, ct) if isinstance(start, Node) else start
    f = _combined(u, acc)
    if f is None:
        u = u if isinstance(u, Node) else const(u, ct)
        return _serial(u, acc, start if isinstance(start, Node) else const(start, ct), env["x"], ct), "serial"
    kind = _COMBINE[u.op]
    if per_row([f])[f]:  # f(v) ignores the element (e.g. a count): reduce it over the row anyway
        f = apply("add", f, apply("mul", cast(apply("isnan", env["x"]), f.dtype), 0.0))
    red = apply(kind, f)
    op = {"sum": "add", "max": "maximum", "min": "minimum"}[kind]
    total = apply("sub" if u.op == "sub" else op, start, red) if isinstance(start, Node) or \
        isinstance(red, Node) else start
    return cast(total, ct), kind


def _combined(u: Any, acc: Node) -> Optional[Node]:
    """f when u is `acc ⊕ f` (⊕ in _COMBINE; `f ⊕ acc` too, except for -) and f does not read acc."""
    if not isinstance(u, Node) or u.op not in _COMBINE or len(u.args) != 2:
        return None
    left, right = (_strip(a) for a in u.args)
    uses_acc = [acc in leaves([a], "input") for a in u.args]
    if left is acc and not uses_acc[1]:
        return u.args[1]
    if right is acc and not uses_acc[0] and u.op != "sub":
        return u.args[0]
    return None


_NARROW = (dt.float16, dt.bfloat16)


def _serial(u: Node, acc: Node, start: Node, x: Node, ct: dt.DType) -> Node:
    """The row's value for a non-associative update u(acc, ...): a "fold" node (ir/registry.py) that
    runs acc = start, then acc = u(acc, element i) over the row, in order.

    u becomes the fold's Lambda: acc turns into its first parameter and every maximal non-constant
    sub-expression not reading acc (a per-element stream such as `exp(x - s1)`, or a per-row value
    such as `s1` or `D`) into a further parameter, fed by the fold's operand of that expression.
    Narrow float operands are passed widened to ct (the widening pass would widen them anyway) and
    rounded back inside the body, which is exact. x is added as an operand when no other is per
    element: the fold takes its trip count D from a per-element operand."""
    reads: dict[Node, bool] = {}
    for n in toposort([u]):
        reads[n] = n == acc or any(reads[a] for a in n.args)
    operands: list[Node] = []
    params = [Node("bound", (), ct, "acc")]
    memo: dict[Node, Node] = {}

    def parameter(o: Node) -> Node:
        wide = o.dtype in _NARROW and ct not in _NARROW
        operands.append(cast(o, ct) if wide else o)
        params.append(Node("bound", (), ct if wide else o.dtype, f"v{len(operands) - 1}"))
        return cast(params[-1], o.dtype) if wide else params[-1]

    def body(n: Node) -> Node:
        if n not in memo:
            if n == acc:
                memo[n] = params[0]
            elif not reads[n]:
                memo[n] = n if n.op == "const" else parameter(n)
            else:
                memo[n] = Node(n.op, tuple(body(a) for a in n.args), n.dtype, n.arg)
        return memo[n]

    step = body(u)
    rows = per_row(operands)
    if all(rows[o] for o in operands):
        parameter(x)
    return fold(start, operands, Lambda(tuple(params), optimize([cast(step, ct)])[0]))


def _check_reduce(text: str, kind: str, compute: Any, where: str, header: str) -> None:
    """A pass's `reduce` (partial-result combiner in `a`, `b`) must match its update's operator."""
    a, b = Node("input", (), dt.float32, "a"), Node("input", (), dt.float32, "b")
    r = _parse(text, {"a": a, "b": b}, compute, f"{where} reduce", header)
    ok = isinstance(r, Node) and _COMBINE.get(r.op) == kind and r.op != "sub" and \
        {_strip(x) for x in r.args} == {a, b}
    if not ok:
        want = {"sum": "a + b", "max": "max(a, b)", "min": "min(a, b)"}[kind]
        raise ZMLXSyntaxError(f"reduce {text!r} does not combine partial results the way update "
                              f"accumulates ({kind}); write {want!r}", Location(f"<{where} reduce>", 1, 1, text))


def reduce_body(name: str, *, init: str, update: str, finalize: str, compute: Any, header: str) -> Builder:
    """The body of a row reduction of `x` (see `_accumulate`), checked once here so malformed
    strings fail at definition."""
    rowsize = Node("rowsize", (), dt.int32)

    def build(inputs: list[Node]) -> list[Node]:
        x = inputs[0]
        total, _ = _accumulate(update, init, ["acc"], {"v": x, "x": x, "D": rowsize}, compute, name, header)
        out = _parse(finalize, {"acc": total, "s": total, "D": rowsize}, compute, f"{name} finalize", header)
        return [_finish(out, inputs, "finalize", finalize, name)]

    _check_definition(build)
    return build


def map_reduce_body(name: str, *, pass1: Mapping[str, str], pass2: Mapping[str, str], write: str,
                    compute: Any, header: str) -> Builder:
    """The body of two row reductions of `x` (into `s1`, then `s2`) and a per-element `write`,
    checked once here so malformed strings fail at definition."""
    rowsize = Node("rowsize", (), dt.int32)

    def build(inputs: list[Node]) -> list[Node]:
        x = inputs[0]
        env = {"x": x, "v": x, "D": rowsize}
        s1, kind1 = _accumulate(pass1["update"], pass1["init"], ["acc1", "acc"], env, compute,
                                f"{name} pass1", header)
        s2, kind2 = _accumulate(pass2["update"], pass2["init"], ["acc2", "acc"], {**env, "s1": s1},
                                compute, f"{name} pass2", header)
        for p, kind, k in ((pass1, kind1, "pass1"), (pass2, kind2, "pass2")):
            if p.get("reduce") and kind != "serial":  # a serial pass has no partial results to combine
                _check_reduce(p["reduce"], kind, compute, f"{name} {k}", header)
        out = _parse(write, {**env, "s1": s1, "s2": s2}, compute, f"{name} write", header)
        return [_finish(out, inputs, "write", write, name)]

    _check_definition(build)
    return build


def _check_definition(build: Builder) -> None:
    """Build once at definition so malformed strings fail early; row strings must be expressions."""
    try:
        build([Node("input", (), dt.float32, "x")])
    except cexpr.RawMetal as e:
        raise ZMLXSyntaxError(f"{e.what} is Metal code outside the expression subset; reduce/map_reduce "
                              "strings must be expressions (write raw Metal with autograd.nary_from_expr)",
                              e.loc) from None
