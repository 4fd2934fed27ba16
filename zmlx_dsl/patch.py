"""`patch(model)`: put zmlx_dsl.nn's kernels into an existing mlx.nn model (mlx-lm's families) in place.

A module is served only when what it computes is known: mlx.nn's own RMSNorm, LayerNorm and RoPE,
or an mlx-lm class whose `__call__` is, statement for statement (read with `ast`), a form listed
below, with its global names (`mx`, `nn`, `swiglu`) resolving to the functions the form means.
Everything else is left alone and listed, with the reason, in the report's `skipped`. mlx-lm is
never imported here: its classes are looked up in `sys.modules` (a model built from them has
already imported them)."""
from __future__ import annotations

import ast
import fnmatch
import inspect
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import mlx.core as mx
import mlx.nn as mnn
from mlx.utils import tree_flatten

from . import backend as backends
from .errors import ZMLXValueError

KINDS = ("rms_norm", "layer_norm", "rope", "mlp", "activation")
SERVED_DTYPES = (mx.float32, mx.float16, mx.bfloat16)
_MARK = "_zmlx_patch"          # on a patched root: its swaps
_FROM = "_zmlx_patched_from"   # on a replacement: the module it replaced
_LM = "mlx_lm.models."

# ---- the forms patch() recognises, as source (compared as ASTs) -----------------------------------

_NORM_FORMS = {  # -> offset (the gemma families' `1 + weight`)
    "return mx.fast.rms_norm(x, self.weight, self.eps)": False,
    "return mx.fast.rms_norm(x, 1.0 + self.weight, self.eps)": True,
    "return mx.fast.rms_norm(x, weight=1.0 + self.weight, eps=self.eps)": True,
}
_GATED_FORMS = {  # -> the gate's activation, for down(act(gate(x)) * up(x))
    "return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))": "silu",
    "down_proj = self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))\nreturn down_proj": "silu",
    "g = self.gate_proj(x)\nx = self.up_proj(x)\nreturn self.down_proj(swiglu(g, x))": "silu",
    "return self.down_proj(nn.silu(self.gate_proj(x)) * self.up_proj(x))": "silu",
    "return self.down_proj(nn.gelu(self.gate_proj(x)) * self.up_proj(x))": "gelu",
    "return self.down_proj(nn.gelu_approx(self.gate_proj(x)) * self.up_proj(x))": "gelu_approx",
    "gate = self.gate_proj(x)\nx = self.up_proj(x)\nreturn self.down_proj(nn.gelu_approx(gate) * x)": "gelu_approx",
}
_FUSED_FORMS = {  # -> the gate's activation, for down(act(h[:H]) * h[H:]), h = gate_up(x)
    "x = self.gate_up_proj(x)\ngate, x = mx.split(x, 2, axis=-1)\nreturn self.down_proj(swiglu(gate, x))": "silu",
    "x = self.gate_up_proj(x)\ngate, up_states = mx.split(x, 2, axis=-1)\n"
    "return self.down_proj(swiglu(gate, up_states))": "silu",
}
_SWIGLU_MODULE_FORM = "return swiglu(gate, x)"  # switch_layers.SwiGLU (the experts' activation), (x, gate)
_ROPE_FORMS = {  # rope_utils class -> its __call__ (the mlx-lm version patch() was written against)
    "Llama3RoPE": "return mx.fast.rope(x, self.dims, traditional=self.traditional, base=None, scale=1.0, "
                  "offset=offset, freqs=self._freqs)",
    "ProportionalRoPE": "return mx.fast.rope(x, self.dims, traditional=self.traditional, base=None, scale=1.0, "
                        "offset=offset, freqs=self._freqs)",
    "SuScaledRoPE": "return mx.fast.rope(x.at[..., :self.dim].multiply(self._scale), self.dim, traditional=False, "
                    "base=None, scale=1.0, offset=offset, freqs=self._freqs)",
    "YarnRoPE": "if self.mscale != 1.0:\n    input_scale = 1.0 / self.mscale if inverse else self.mscale\n"
                "    x = x.at[..., :self.dims].multiply(input_scale)\n"
                "freqs = -self._freqs if inverse else self._freqs\n"
                "return mx.fast.rope(x, self.dims, traditional=self.traditional, base=None, scale=scale, "
                "offset=offset, freqs=freqs)",
}
_NOT_EXPRESSIBLE = {"DynamicNTKScalingRoPE": "its base depends on each call's sequence length and offset "
                                             "(not served)"}


_BODIES: dict[Callable, Optional[tuple[str, ...]]] = {}
_FORMS: dict[str, tuple[str, ...]] = {}
_GLOBALS = {"mx": "mlx.core", "nn": "mlx.nn", "swiglu": "mlx_lm.models.activations.swiglu"}


def _body(fn: Callable) -> Optional[tuple[str, ...]]:
    """The AST dumps of fn's statements (its docstring left out), or None without source."""
    if fn not in _BODIES:
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0].body
        except (OSError, TypeError, SyntaxError, IndexError, AttributeError):
            _BODIES[fn] = None
        else:
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            _BODIES[fn] = tuple(ast.dump(s) for s in body)
    return _BODIES[fn]


def _form(fn: Callable, forms: Iterable[str]) -> Optional[str]:
    """The form (one of `forms`, as source) whose statements fn's body is, or None."""
    dump = _body(fn)
    if dump is None:
        return None
    for source in forms:
        if source not in _FORMS:
            _FORMS[source] = tuple(ast.dump(s) for s in ast.parse(source).body)
        if _FORMS[source] == dump:
            return source
    return None


def _resolves(fn: Callable, source: str) -> Optional[str]:
    """None when the form's global names mean, in fn's module, what the form means; else why not."""
    activations = sys.modules.get(_LM + "activations")
    expected = {"mx": mx, "nn": mnn, "swiglu": getattr(activations, "swiglu", None)}
    used = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    for name in sorted(used & set(expected)):
        if expected[name] is None or getattr(fn, "__globals__", {}).get(name) is not expected[name]:
            return f"its `{name}` is not {_GLOBALS[name]}"
    return None


# ---- what a module is, and what would replace it ---------------------------------------------------

@dataclass
class _Plan:
    kind: str
    description: str
    build: Callable[[Optional[str]], mnn.Module]  # the replacement on a backend


class _Skip(Exception):
    """A module left alone, with the reason."""


class _Container(Exception):
    """A module of another kind that holds modules: walked into, not listed."""


class _Mismatch(Exception):
    """A module patch() would serve but whose parameters do not fit the replacement: an error."""


def _name(m: mnn.Module) -> str:
    return type(m).__name__


def _params(m: mnn.Module) -> dict[str, mx.array]:
    return dict(tree_flatten(m.parameters()))


def _check_dtypes(m: mnn.Module) -> None:
    for k, v in _params(m).items():
        if mx.issubdtype(v.dtype, mx.floating) and v.dtype not in SERVED_DTYPES:
            raise _Skip(f"{_name(m)}: parameter '{k}' is {v.dtype}; the kernels serve float32, float16 and bfloat16")


def _check_names(m: mnn.Module, expected: Iterable[str], replacement: str) -> None:
    extra = sorted(set(_params(m)) - set(expected))
    if extra:
        raise _Mismatch(f"{_name(m)} has parameter{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
                        f"that {replacement} does not (it has {', '.join(expected) or 'none'}): patching would drop "
                        f"{'them' if len(extra) > 1 else 'it'} from the model's parameters")


def _row_weight(m: mnn.Module, name: str, replacement: str) -> Optional[mx.array]:
    w = m.get(name) if isinstance(m.get(name), mx.array) else None
    if w is not None and w.ndim != 1:
        raise _Mismatch(f"{_name(m)}: parameter '{name}' has shape {tuple(w.shape)}; {replacement} needs a 1-D "
                        f"(dims,) {name} over the normalized axis")
    return w


def _adopt(new: mnn.Module, old: mnn.Module, **params: Optional[mx.array]) -> mnn.Module:
    """`new` with `old`'s arrays (the same objects), frozen keys and training mode."""
    for k, v in params.items():
        if v is not None:
            new[k] = v
    new._no_grad = set(old._no_grad)
    new._training = old._training
    return new


def _norm_plan(m: mnn.Module, offset: bool) -> _Plan:
    from . import nn as znn
    cls = znn.OffsetRMSNorm if offset else znn.RMSNorm
    replacement = f"zmlx_dsl.nn.{cls.__name__}"
    w = _row_weight(m, "weight", replacement)
    if w is None:
        raise _Mismatch(f"{_name(m)} has no array parameter 'weight', which {replacement} needs")
    if not isinstance(getattr(m, "eps", None), (int, float)):
        raise _Skip(f"{_name(m)}: its eps is not a number")
    _check_names(m, ("weight",), replacement)
    return _Plan("rms_norm", f"{_name(m)} -> {replacement}",
                 lambda b: _adopt(cls(w.shape[0], m.eps, backend=b), m, weight=w))


def _layer_norm_plan(m: mnn.LayerNorm) -> _Plan:
    from . import nn as znn
    w, b = (_row_weight(m, k, "zmlx_dsl.nn.LayerNorm") for k in ("weight", "bias"))
    names = tuple(k for k, v in (("weight", w), ("bias", b)) if v is not None)
    _check_names(m, names, "zmlx_dsl.nn.LayerNorm")
    return _Plan("layer_norm", f"{_name(m)} -> zmlx_dsl.nn.LayerNorm",
                 lambda be: _adopt(znn.LayerNorm(m.dims, m.eps, w is not None, b is not None, backend=be), m,
                                   weight=w, bias=b))


def _rope_plan(m: mnn.Module, cls_name: str) -> _Plan:
    from . import nn as znn
    _check_names(m, (), "a rotary embedding")
    if cls_name == "RoPE":
        return _Plan("rope", "RoPE -> zmlx_dsl.nn.RoPE",
                     lambda b: _adopt(znn.RoPE(m.dims, m.traditional, m.base, m.scale, backend=b), m))
    if cls_name == "SuScaledRoPE":
        dims, traditional, mscale = m.dim, False, m._scale
    else:
        dims, traditional, mscale = m.dims, m.traditional, getattr(m, "mscale", 1.0) if cls_name == "YarnRoPE" else 1.0
    if m._freqs.shape != (dims // 2,):
        raise _Skip(f"{cls_name}: its freqs have shape {tuple(m._freqs.shape)}, not ({dims // 2},)")
    return _Plan("rope", f"{cls_name} -> zmlx_dsl.nn.FreqsRoPE",
                 lambda b: _adopt(znn.FreqsRoPE(dims, m._freqs, traditional, mscale, backend=b), m))


def _mlp_plan(m: mnn.Module, source: str, fused: bool) -> _Plan:
    from . import nn as znn
    activation = (_FUSED_FORMS if fused else _GATED_FORMS)[source]
    names = ("gate_up_proj", "down_proj") if fused else ("gate_proj", "up_proj", "down_proj")
    if not all(isinstance(m.get(n), mnn.Module) for n in names):
        raise _Skip(f"{_name(m)}: {', '.join(names)} are not all modules")
    _check_dtypes(m)
    expected = tuple(k for k in _params(m) if k.split(".")[0] in names)
    _check_names(m, expected, "zmlx_dsl.nn." + ("FusedGatedMLP" if fused else "GatedMLP"))
    cls = znn.FusedGatedMLP if fused else znn.GatedMLP
    glu = {"silu": "SwiGLU", "gelu": "GeGLU", "gelu_approx": "GeGLU, tanh gelu"}[activation]
    return _Plan("mlp", f"{_name(m)} -> zmlx_dsl.nn.{cls.__name__} ({glu})",
                 lambda b: _adopt(cls.of(*(m[n] for n in names), activation, names=names, backend=b), m))


_CANDIDATE_WORDS = ("norm", "rope", "rotary", "mlp", "glu", "feedforward", "ffn")


def _plan(m: mnn.Module, unserved: Optional[mx.Dtype]) -> _Plan:
    """What would replace `m` (raises _Skip, _Mismatch or _Container); `unserved`: a float dtype of the
    model's parameters the kernels do not serve (a rotary embedding, which has none, would meet it)."""
    cls = type(m)
    if cls.__module__.startswith("zmlx_dsl."):
        raise _Skip(f"{cls.__name__}: already a zmlx_dsl layer")
    call = cls.__call__
    if isinstance(m, mnn.RMSNorm) and call is mnn.RMSNorm.__call__:
        _check_dtypes(m)
        return _norm_plan(m, False)
    if isinstance(m, mnn.LayerNorm) and call is mnn.LayerNorm.__call__:
        _check_dtypes(m)
        return _layer_norm_plan(m)
    rope_utils = sys.modules.get(_LM + "rope_utils")
    is_rope_utils = rope_utils is not None and cls.__module__ == rope_utils.__name__
    if unserved is not None and (isinstance(m, mnn.RoPE) or is_rope_utils):
        raise _Skip(f"{cls.__name__}: the model's parameters are {unserved}, which the kernels do not serve")
    if isinstance(m, mnn.RoPE) and call is mnn.RoPE.__call__:
        return _rope_plan(m, "RoPE")
    if is_rope_utils:
        if cls.__name__ in _NOT_EXPRESSIBLE:
            raise _Skip(f"{cls.__name__}: {_NOT_EXPRESSIBLE[cls.__name__]}")
        if cls.__name__ in _ROPE_FORMS and getattr(rope_utils, cls.__name__) is cls:
            source = _form(call, [_ROPE_FORMS[cls.__name__]])
            if source is None:
                raise _Skip(f"{cls.__name__}: its __call__ is not the one patch() knows (another mlx-lm version)")
            return _rope_plan(m, cls.__name__)
    found = _class_form(cls)
    if found is not None:
        group, source = found
        why = _resolves(call, source)
        if why is not None:
            raise _Skip(f"{cls.__name__}: {why}")
        if group == "norm":
            _check_dtypes(m)
            return _norm_plan(m, _NORM_FORMS[source])
        if group == "swiglu":
            return _swiglu_plan(m)
        return _mlp_plan(m, source, fused=group == "fused")
    if _is_candidate(m):
        raise _Skip(f"{cls.__name__}: its __call__ is not a form patch() knows (mlx.nn's norms and RoPE, mlx-lm's "
                    f"1 + weight RMSNorm and scaled ropes, SwiGLU/GeGLU MLPs)")
    if any(isinstance(v, (mnn.Module, list, dict)) for v in m.values()):
        raise _Container()
    raise _Skip(f"{cls.__name__}: not a kind patch() serves (norms, rotary embeddings, gated MLPs)")


_CLASS_FORMS: dict[type, Optional[tuple[str, str]]] = {}


def _class_form(cls: type) -> Optional[tuple[str, str]]:
    """(group, form) of the form table cls.__call__ is in ("norm", "gated", "fused", "swiglu"); once per class."""
    if cls not in _CLASS_FORMS:
        _CLASS_FORMS[cls] = None
        if cls.__call__ is not mnn.Module.__call__:
            for group, forms in (("norm", _NORM_FORMS), ("gated", _GATED_FORMS), ("fused", _FUSED_FORMS),
                                 ("swiglu", {_SWIGLU_MODULE_FORM: None})):
                source = _form(cls.__call__, forms)
                if source is not None:
                    _CLASS_FORMS[cls] = (group, source)
                    break
    return _CLASS_FORMS[cls]


def _swiglu_plan(m: mnn.Module) -> _Plan:
    from . import nn as znn
    if list(inspect.signature(type(m).__call__).parameters)[1:] != ["x", "gate"]:
        raise _Skip(f"{_name(m)}: its __call__ does not take (x, gate)")
    _check_names(m, (), "zmlx_dsl.nn.SwiGLU")
    return _Plan("activation", f"{_name(m)} -> zmlx_dsl.nn.SwiGLU", lambda b: _adopt(znn.SwiGLU(backend=b), m))


def _is_candidate(m: mnn.Module) -> bool:
    name = type(m).__name__.lower()
    return any(w in name for w in _CANDIDATE_WORDS) or any(k in m for k in ("gate_proj", "gate_up_proj"))


# ---- the tree -------------------------------------------------------------------------------------

@dataclass
class _Swap:
    path: str
    container: Union[mnn.Module, list, dict]
    key: Union[str, int]
    original: mnn.Module
    replacement: mnn.Module


def _walk(module: mnn.Module, prefix: str = "") -> Iterator[tuple[str, Any, Any, mnn.Module]]:
    """(dotted path, container, key, module) for every module below `module`, depth first."""
    def items(value: Any, path: str) -> Iterator[tuple[str, Any, Any, mnn.Module]]:
        for k, v in list(value.items() if isinstance(value, dict) else enumerate(value)):
            p = f"{path}.{k}" if path else str(k)
            if isinstance(v, mnn.Module):
                yield p, value, k, v
                yield from items(v, p)
            elif isinstance(v, (list, dict)):
                yield from items(v, p)
    yield from items(module, prefix)


class PatchReport(list):
    """The dotted paths patched (a list of str), with `skipped` {path: reason} and `replaced` {path: what}."""

    def __init__(self, patched: Iterable[str] = (), skipped: Optional[dict[str, str]] = None,
                 replaced: Optional[dict[str, str]] = None, dry_run: bool = False) -> None:
        super().__init__(patched)
        self.skipped = dict(skipped or {})
        self.replaced = dict(replaced or {})
        self.dry_run = dry_run

    def __str__(self) -> str:
        def grouped(entries: dict[str, str]) -> list[str]:
            groups: dict[str, list[str]] = {}
            for path, what in entries.items():
                groups.setdefault(what, []).append(path)
            return [f"  {what}: {len(paths)} × ({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''})"
                    for what, paths in groups.items()]
        verb = "would patch" if self.dry_run else "patched"
        return "\n".join([f"{verb} {len(self)} modules:"] + grouped(self.replaced) +
                         [f"left alone {len(self.skipped)}:"] + grouped(self.skipped))


def _as_patterns(value: Union[None, str, Iterable[str]], what: str) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    patterns = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"patch: {what}= takes kinds ({', '.join(KINDS)}) or dotted-path patterns, as strings")
    return patterns


def _matches(pattern: str, path: str, kind: Optional[str]) -> bool:
    """A kind name, or an fnmatch pattern on the dotted path (matching a module matches what lies below it)."""
    return pattern == kind or any(fnmatch.fnmatchcase(prefix, pattern)
                                  for prefix in (".".join(path.split(".")[:i + 1]) for i in range(path.count(".") + 1)))


def patch(model: mnn.Module, *, include: Union[None, str, Iterable[str]] = None,
          exclude: Union[None, str, Iterable[str]] = None, backend: Optional[str] = None,
          dry_run: bool = False) -> PatchReport:
    """Swap, in place, the modules of `model` that zmlx_dsl.nn serves; returns the patched dotted paths."""
    if not isinstance(model, mnn.Module):
        raise TypeError(f"patch: expected an mlx.nn.Module, got {type(model).__name__}")
    if backend is not None:
        backends.check(backend)
    if model.__dict__.get(_MARK) is not None:
        raise ZMLXValueError(f"patch: the model is already patched ({len(model.__dict__[_MARK])} modules); call "
                             f"zmlx_dsl.unpatch(model) before patching it again")
    walked = list(_walk(model))
    for path, _, _, m in walked:
        if m.__dict__.get(_MARK) is not None or m.__dict__.get(_FROM) is not None:
            raise ZMLXValueError(f"patch: {path} is already patched by an earlier zmlx_dsl.patch call; unpatch that "
                                 f"model before patching this one")
    include_p, exclude_p = _as_patterns(include, "include"), _as_patterns(exclude, "exclude")
    unserved = next((v.dtype for _, v in tree_flatten(model.parameters())
                     if mx.issubdtype(v.dtype, mx.floating) and v.dtype not in SERVED_DTYPES), None)
    plans: dict[int, Union[_Plan, _Skip, _Mismatch, _Container]] = {}
    used: set[str] = set()
    chosen: list[tuple[str, Any, Any, mnn.Module, _Plan]] = []
    skipped: dict[str, str] = {}
    mismatches: list[str] = []
    for path, container, key, m in walked:
        if id(m) not in plans:
            try:
                plans[id(m)] = _plan(m, unserved)
            except (_Skip, _Mismatch, _Container) as e:
                plans[id(m)] = e
        plan = plans[id(m)]
        if isinstance(plan, _Container):
            continue
        kind = plan.kind if isinstance(plan, _Plan) else None
        hit_in = [p for p in include_p or () if _matches(p, path, kind)]
        hit_ex = [p for p in exclude_p or () if _matches(p, path, kind)]
        used.update(hit_in + hit_ex)
        if include_p is not None and not hit_in:
            reason = f"not in include={list(include_p)}"
        elif hit_ex:
            reason = f"excluded by {hit_ex[0]!r}"
        elif isinstance(plan, _Plan):
            chosen.append((path, container, key, m, plan))
            continue
        else:
            reason = str(plan)
            if isinstance(plan, _Mismatch):
                mismatches.append(f"{path}: {plan}")
                reason = "parameter mismatch: " + reason
        if not any(path.startswith(p + ".") for p, *_ in chosen):  # what a patched module keeps is not listed
            skipped[path] = reason
    unused = [p for p in (include_p or ()) + (exclude_p or ()) if p not in used and p not in KINDS]
    if unused:
        raise ZMLXValueError(f"patch: {unused[0]!r} names no module of this model: give a kind ({', '.join(KINDS)}) "
                             f"or a dotted-path pattern such as 'model.layers.*.mlp'")
    report = PatchReport([c[0] for c in chosen], skipped, {c[0]: c[4].description for c in chosen}, dry_run)
    if dry_run:
        return report
    if mismatches:
        raise ZMLXValueError("patch: parameters do not match (nothing was patched; exclude= these modules to patch "
                             "the rest):\n  " + "\n  ".join(mismatches))
    built: dict[int, mnn.Module] = {}
    swaps = []
    for path, container, key, m, plan in chosen:
        if id(m) not in built:
            new = built[id(m)] = plan.build(backend)
            object.__setattr__(new, _FROM, m)
        swaps.append(_Swap(path, container, key, m, built[id(m)]))
    for s in swaps:
        s.container[s.key] = s.replacement
    object.__setattr__(model, _MARK, swaps)
    return report


def unpatch(model: mnn.Module) -> list[str]:
    """Put back the modules patch() replaced (carrying over their current parameters); returns their paths."""
    swaps: Optional[list[_Swap]] = model.__dict__.get(_MARK) if isinstance(model, mnn.Module) else None
    if swaps is None:
        raise ZMLXValueError("unpatch: this model was not patched by zmlx_dsl.patch (or is already unpatched)")
    for s in swaps:
        if s.container[s.key] is not s.replacement:
            raise ZMLXValueError(f"unpatch: {s.path} is no longer the module patch() put there (it is a "
                                 f"{_name(s.container[s.key])}); nothing was restored")
    done: set[int] = set()
    for s in swaps:
        if id(s.replacement) not in done:
            done.add(id(s.replacement))
            children = s.replacement.children()
            if children:
                s.original.update_modules(children)
            s.original.update(s.replacement.parameters())
            s.original._no_grad = set(s.replacement._no_grad)
            s.original._training = s.replacement._training
        s.container[s.key] = s.original
    object.__setattr__(model, _MARK, None)
    return [s.path for s in swaps]
