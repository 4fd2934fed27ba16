"""The ZMLX-compatible string API: `elementwise`, `reduce` and `map_reduce` from C-like expressions.

Strings that parse (cexpr's subset) become IR programs: every backend runs them, gradients are
automatic unless `grad_expr` gives the VJP, and `reduce`/`map_reduce` become the same fused row
kernels as the decorator form (an update that is not `acc ⊕ f(v)` for an associative ⊕ becomes a
serial "fold" over the row). Strings using Metal outside the subset run on metal/metal-sim only.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Mapping, Optional, Sequence

import mlx.core as mx

from . import backend as backends
from .frontend import cexpr
from .errors import Location, ZMLXSyntaxError, ZMLXTypeError
from .ir import dtypes as dt
from .ir.build import apply, cast, const, fold
from .ir.node import Lambda, Node, leaves, toposort
from .ir.passes import optimize, per_row, widen
from .ir.program import Program
from .kernels import Kernel, _Entry
from .msl import DEFAULT_HEADER
from .runtime import Compiled, unbroadcast

Builder = Callable[[list[Node]], list[Node]]


class ExprKernel(Kernel):
    """A kernel whose body is built from expression strings; called like a decorated kernel."""

    def __init__(self, name: str, kind: str, arg_names: Sequence[str], build: Builder, *,
                 compute_dtype: Any = None, backend: Optional[str] = None,
                 given_vjp: Optional[Callable[[list[Node], list[Node]], tuple]] = None) -> None:
        self.name = self.__name__ = self.__qualname__ = name
        self.kind = kind
        self.compute = dt.from_mx(compute_dtype or mx.float32)
        self.backend = backends.check(backend) if backend else None
        self.axis = -1
        self.autodiff = "ir"  # a given grad_expr or a serial fold must act alike on every backend
        self.positional = list(arg_names)
        self._cache: dict = {}
        self._fast: dict = {}
        self._make = build
        self._given = given_vjp

    def _build(self, args: tuple, kwargs: dict) -> _Entry:
        if kwargs or len(args) != len(self.positional):
            raise ZMLXTypeError(f"{self.name}() takes {len(self.positional)} array argument(s) "
                                f"({', '.join(self.positional)}), got {len(args)}"
                                + (f" and keywords {sorted(kwargs)}" if kwargs else ""))
        inputs = []
        for pname, a in zip(self.positional, args):
            if not isinstance(a, mx.array):
                raise ZMLXTypeError(f"{self.name}(): argument '{pname}' must be an mx.array, got "
                                    f"{type(a).__name__}; wrap scalars with mx.array(...)")
            inputs.append(Node("input", (), dt.from_mx(a.dtype), pname))
        outs = optimize(widen(optimize(self._make(inputs)), self.compute))
        flags = [per_row(outs)[o] for o in outs] if self.kind != "elementwise" else [False] * len(outs)
        kind = "elementwise" if self.kind == "elementwise" else "row"
        program = Program(self.name, kind, tuple(inputs), (), tuple(outs))
        entry = _Entry(program, [("array", i) for i in range(len(inputs))], False, flags, [])
        entry.given = self._given(inputs, outs) if self._given else None
        return entry

    def _compile(self, entry: _Entry, target: str) -> Compiled:
        if entry.given is None:
            return super()._compile(entry, target)
        c = entry.compiled[target] = GivenVJP(entry.program, target, *entry.given)
        return c

    def grad_ir(self, *args: Any, **kwargs: Any) -> str:
        """The backward program's IR: the given VJP when grad_expr was passed, else the generated one."""
        entry = self._entry(args, kwargs)
        return entry.given[0].text() if entry.given else super().grad_ir(*args, **kwargs)


class GivenVJP(Compiled):
    """A compiled elementwise program whose VJP is a user-given program (grad_expr).

    `roles` says what feeds each input of the VJP program: ("x", i) argument i, ("y", 0) the
    output, ("g", 0) the cotangent. The forward-mode rule reuses it: for an elementwise op the
    Jacobian is diagonal, so the tangent is sum_i vjp_i(g = t_i)."""

    def __init__(self, program: Program, target: str, vjp_program: Program, roles: list) -> None:
        self.given = Compiled(vjp_program, target)
        self.roles = roles
        super().__init__(program, target)

    def _given(self, arrays: Sequence[mx.array], y: mx.array, g: mx.array) -> list[mx.array]:
        pick = {"x": arrays, "y": [y], "g": [g]}
        return self.given([pick[r][k] for r, k in self.roles])

    def _vjp(self, primals, cotangents, outputs):
        primals = list(primals) if isinstance(primals, (list, tuple)) else [primals]
        y = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        g = cotangents[0] if isinstance(cotangents, (list, tuple)) else cotangents
        g = mx.zeros_like(y) if g is None else g
        return [unbroadcast(d, x.shape) for d, x in zip(self._given(primals, y, g), primals)]

    def _jvp(self, primals, tangents):
        primals = list(primals) if isinstance(primals, (list, tuple)) else [primals]
        tangents = list(tangents) if isinstance(tangents, (list, tuple)) else [tangents]
        y = self.runner(primals)[0]
        total = mx.zeros_like(y)
        for i, t in enumerate(tangents):
            if t is not None:
                total = total + self._given(primals, y, mx.broadcast_to(t, y.shape).astype(y.dtype))[i]
        return [total.astype(y.dtype)]


# ---- parsing helpers ---------------------------------------------------------------------------

def _types(compute: Any) -> dict:
    return {"T": dt.from_mx(compute or mx.float32)}


def _auto_name(kind: str, *texts: str) -> str:
    return f"{kind}_{hashlib.sha256(chr(0).join(texts).encode()).hexdigest()[:8]}"


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

def pointwise(name: str, arg_names: Sequence[str], fwd: str, grads: Optional[Sequence[str]], *,
              prelude: str = "", use_output: bool = True, compute_dtype: Any = None,
              header: Optional[str] = None, backend: Optional[str] = None) -> Callable:
    """An elementwise kernel of len(arg_names) inputs from strings; `grads` (one VJP per input,
    over the inputs, `y` and `g`) replaces the automatic gradient. Shared by api and autograd."""
    header = DEFAULT_HEADER if header is None else header
    grad_names = list(arg_names) + (["y"] if use_output else []) + ["g"]
    texts = [(fwd, f"{name} expr", False), (prelude, f"{name} grad_prelude", True)]
    texts += [(g, f"{name} grad_expr", False) for g in grads or ()]
    why = _is_raw(texts[:1], arg_names, compute_dtype, header) or \
        (grads and _is_raw(texts[1:], grad_names, compute_dtype, header))
    if why:
        from .autograd import raw_pointwise
        return raw_pointwise(name, arg_names, fwd, grads, prelude=prelude, use_output=use_output,
                             compute_dtype=compute_dtype, header=header, backend=backend, why=why)

    def build(inputs: list[Node]) -> list[Node]:
        env = dict(zip(arg_names, inputs))
        return [_finish(_parse(fwd, env, compute_dtype, f"{name} expr", header), inputs, "expr", fwd, name)]

    given = None
    if grads:
        def given(inputs: list[Node], outs: list[Node]) -> tuple[Program, list]:
            y = Node("input", (), outs[0].dtype, "y")
            g = Node("input", (), outs[0].dtype, "g")
            env = {**dict(zip(arg_names, inputs)), "g": g, **({"y": y} if use_output else {})}
            env = cexpr.parse_prelude(prelude, env, types=_types(compute_dtype),
                                      file=f"<{name} grad_prelude>", header=header)
            ds = [_finish(_parse(text, env, compute_dtype, f"{name} grad_expr", header), [x], "grad_expr", text, name)
                  for text, x in zip(grads, inputs)]
            ds = [cast(d, x.dtype) for d, x in zip(ds, inputs)]
            ds = optimize(widen(optimize(ds), dt.from_mx(compute_dtype or mx.float32)))
            used = set(leaves(ds, "input"))
            roles = [(("x", i), x) for i, x in enumerate(inputs) if x in used] + \
                    [((r, 0), n) for r, n in (("y", y), ("g", g)) if n in used]
            prog = Program(name + "_vjp", "elementwise", tuple(n for _, n in roles), (), tuple(ds))
            return prog, [r for r, _ in roles]

    return ExprKernel(name, "elementwise", arg_names, build, compute_dtype=compute_dtype, backend=backend,
                      given_vjp=given)


def elementwise(expr: str, *, name: Optional[str] = None, grad_expr: Optional[str] = None,
                grad_prelude: str = "", use_output: bool = True, compute_dtype: Any = None,
                header: Optional[str] = None, backend: Optional[str] = None) -> Callable:
    """An elementwise op from a C expression in `x`; differentiable automatically, or via
    `grad_expr` (in `g`, `x`, `y` when use_output, and `grad_prelude` declarations)."""
    return pointwise(name or _auto_name("elementwise", expr), ["x"], expr,
                     [grad_expr] if grad_expr is not None else None, prelude=grad_prelude,
                     use_output=use_output, compute_dtype=compute_dtype, header=header, backend=backend)


# ---- row reductions ----------------------------------------------------------------------------

_COMBINE = {"add": "sum", "sub": "sum", "maximum": "max", "minimum": "min"}


def _strip(n: Node) -> Node:
    return n.args[0] if n.op == "cast" else n


def _accumulate(update: str, init: str, acc_names: Sequence[str], env: dict, compute: Any,
                where: str, header: str) -> tuple[Node, str]:
    """The row's accumulated value and how it is computed. For `update` = `acc ⊕ f(...)` with an
    associative ⊕ (+, -, max, min): `init ⊕ reduce(f)`, a parallel reduction ("sum"/"max"/"min").
    Any other update (e.g. `acc * 0.5f + v`, `acc * v`): a serial fold over the row ("serial")."""
    ct = dt.from_mx(compute or mx.float32)
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


def reduce(*, init: str, update: str, finalize: str = "acc", name: Optional[str] = None,
           compute_dtype: Any = None, header: Optional[str] = None, backend: Optional[str] = None) -> Callable:
    """A row reduction (last axis) from `init`, `update` (in `acc`, `v`, `D`) and `finalize`
    (in `acc` or `s`): one fused row kernel; output shape drops the last axis.

    An update `acc ⊕ f(v)` with ⊕ one of +, -, max, min (fmax/fmin) is a parallel reduction and
    differentiable. Any other update (`acc * 0.5f + v`, `acc * v`, …) runs as written: a serial
    loop over the row in element order (one thread per row on the C backends), with no gradient
    (asking for one raises ZMLXGradientError)."""
    name = name or _auto_name("reduce", init, update, finalize)
    header = DEFAULT_HEADER if header is None else header
    rowsize = Node("rowsize", (), dt.int32)

    def build(inputs: list[Node]) -> list[Node]:
        x = inputs[0]
        total, _ = _accumulate(update, init, ["acc"], {"v": x, "x": x, "D": rowsize}, compute_dtype, name, header)
        out = _parse(finalize, {"acc": total, "s": total, "D": rowsize}, compute_dtype, f"{name} finalize", header)
        return [_finish(out, inputs, "finalize", finalize, name)]

    _check_definition(build)
    return ExprKernel(name, "reduce", ["x"], build, compute_dtype=compute_dtype, backend=backend)


def map_reduce(*, pass1: Mapping[str, str], pass2: Mapping[str, str], write: str, name: Optional[str] = None,
               threadgroup: int = 256, compute_dtype: Any = None, header: Optional[str] = None,
               backend: Optional[str] = None) -> Callable:
    """Two row reductions then a per-element write (softmax, norms): pass1 accumulates `acc1`
    over `x` into `s1`, pass2 `acc2` (may use `s1`) into `s2`, `write` uses `x, s1, s2, D`.
    One fused row kernel; the backend picks the launch (`threadgroup` is checked, ZMLX-compatible).
    A pass whose update is not `acc ⊕ f(x)` (see `reduce`) runs as a serial loop over the row and
    its `reduce` is not used (a serial loop has no partial results to combine)."""
    name = name or _auto_name("map_reduce", str(pass1), str(pass2), write)
    header = DEFAULT_HEADER if header is None else header
    if not isinstance(threadgroup, int) or threadgroup < 32 or threadgroup > 1024 or threadgroup & (threadgroup - 1):
        raise ValueError(f"{name}: threadgroup must be a power of two from 32 to 1024, got {threadgroup!r} "
                         "(partial sums of other sizes are lost in a tree reduction)")
    for k, p in (("pass1", pass1), ("pass2", pass2)):
        missing = {"init", "update"} - set(p)
        if missing:
            raise ZMLXTypeError(f"{name}: {k} needs the keys 'init' and 'update' (and 'reduce'); missing "
                                f"{', '.join(sorted(missing))}")
    rowsize = Node("rowsize", (), dt.int32)

    def build(inputs: list[Node]) -> list[Node]:
        x = inputs[0]
        env = {"x": x, "v": x, "D": rowsize}
        s1, kind1 = _accumulate(pass1["update"], pass1["init"], ["acc1", "acc"], env, compute_dtype,
                                f"{name} pass1", header)
        s2, kind2 = _accumulate(pass2["update"], pass2["init"], ["acc2", "acc"], {**env, "s1": s1},
                                compute_dtype, f"{name} pass2", header)
        for p, kind, k in ((pass1, kind1, "pass1"), (pass2, kind2, "pass2")):
            if p.get("reduce") and kind != "serial":  # a serial pass has no partial results to combine
                _check_reduce(p["reduce"], kind, compute_dtype, f"{name} {k}", header)
        out = _parse(write, {**env, "s1": s1, "s2": s2}, compute_dtype, f"{name} write", header)
        return [_finish(out, inputs, "write", write, name)]

    _check_definition(build)
    kernel = ExprKernel(name, "map_reduce", ["x"], build, compute_dtype=compute_dtype, backend=backend)
    kernel.threadgroup = threadgroup
    return kernel


def _check_definition(build: Builder) -> None:
    """Build once at definition so malformed strings fail early; row strings must be expressions."""
    try:
        build([Node("input", (), dt.float32, "x")])
    except cexpr.RawMetal as e:
        raise ZMLXSyntaxError(f"{e.what} is Metal code outside the expression subset; reduce/map_reduce "
                              "strings must be expressions (write raw Metal with autograd.nary_from_expr)",
                              e.loc) from None
