"""Assemble a Metal kernel's full source exactly as MLX 0.32.4's ``mx.fast.metal_kernel`` does.

Golden tests compare this text with what MLX prints (``verbose=True`` under ``mx.export_function``),
so the metal-sim backend compiles the very signature MLX would hand to the Metal compiler.
"""

from __future__ import annotations

from typing import Any, Sequence

# Inputs with fewer elements than this are passed in the `constant` address space.
MAX_CONSTANT_ARRAY_SIZE = 8

# (attribute, type) in MLX's order; an attribute becomes a parameter when its name occurs in the body.
METAL_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("dispatch_quadgroups_per_threadgroup", "uint"),
    ("dispatch_simdgroups_per_threadgroup", "uint"),
    ("dispatch_threads_per_threadgroup", "uint3"),
    ("grid_origin", "uint3"),
    ("grid_size", "uint3"),
    ("quadgroup_index_in_threadgroup", "uint"),
    ("quadgroups_per_threadgroup", "uint"),
    ("simdgroup_index_in_threadgroup", "uint"),
    ("simdgroups_per_threadgroup", "uint"),
    ("thread_execution_width", "uint"),
    ("thread_index_in_quadgroup", "uint"),
    ("thread_index_in_simdgroup", "uint"),
    ("thread_index_in_threadgroup", "uint"),
    ("thread_position_in_grid", "uint3"),
    ("thread_position_in_threadgroup", "uint3"),
    ("threadgroup_position_in_grid", "uint3"),
    ("threadgroups_per_grid", "uint3"),
    ("threads_per_grid", "uint3"),
    ("threads_per_simdgroup", "uint"),
    ("threads_per_threadgroup", "uint3"),
)

_TYPE_NAMES = {
    "float32": "float", "float16": "float16_t", "bfloat16": "bfloat16_t", "float64": "double",
    "complex64": "complex64_t", "bool": "bool", "int8": "int8_t", "int16": "int16_t",
    "int32": "int32_t", "int64": "int64_t", "uint8": "uint8_t", "uint16": "uint16_t",
    "uint32": "uint32_t", "uint64": "uint64_t",
}


def type_name(dtype: Any) -> str:
    """Metal spelling MLX uses for an MLX dtype (``mx.float16`` -> ``float16_t``)."""
    key = str(dtype).rsplit(".", 1)[-1]
    if key == "bool_":
        key = "bool"
    if key not in _TYPE_NAMES:
        raise TypeError(f"[metal_kernel] Unsupported compilation type {dtype}")
    return _TYPE_NAMES[key]


def _size(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def template_value(value: Any) -> tuple[str, str]:
    """(C++ parameter kind, instantiation text) of one template argument, as MLX writes them."""
    if isinstance(value, bool):
        return "bool", "1" if value else "0"
    if isinstance(value, int):
        return "int", str(value)
    return "typename", type_name(value)


def shape_infos(input_names: Sequence[str], source: str) -> list[tuple[bool, bool, bool]]:
    """Per input: whether ``<name>_shape``, ``<name>_strides``, ``<name>_ndim`` occur in the body."""
    return [(f"{n}_shape" in source, f"{n}_strides" in source, f"{n}_ndim" in source) for n in input_names]


def used_attributes(source: str) -> list[str]:
    """Attribute names that become kernel parameters (substring match, as MLX does)."""
    return [a for a, _ in METAL_ATTRIBUTES if a in source]


def kernel_name(name: str, inputs: Sequence[Any], output_dtypes: Sequence[Any],
                template: Sequence[tuple[str, Any]] | None = None) -> str:
    """MLX's mangled host name: ``custom_kernel_<name>[_<template hash>]_<in types+s/c>_<out types>``."""
    out = "custom_kernel_" + name
    if template:
        inst = "<" + ", ".join(template_value(v)[1] for _, v in template) + ">"
        out += "_" + inst.replace(", ", "_").replace("<", "_").replace(">", "_")[:-1]
    for x in inputs:
        out += "_" + type_name(x.dtype)
        if len(x.shape) == 0:
            out += "s"
        elif _size(x.shape) < MAX_CONSTANT_ARRAY_SIZE:
            out += "c"
    for dt in output_dtypes:
        out += "_" + type_name(dt)
    return out


def build_metal_source(name: str, input_names: Sequence[str], output_names: Sequence[str],
                       source: str, header: str, inputs: Sequence[Any],
                       template: Sequence[tuple[str, Any]] | None = None,
                       ensure_row_contiguous: bool = True, atomic_outputs: bool = False,
                       output_dtypes: Sequence[Any] | None = None) -> str:
    """Full kernel text as MLX 0.32.4 generates it (header, signature, body, instantiation).

    ``output_dtypes`` defaults to float32 for every output. MLX's bug is reproduced on purpose:
    with >= 2 outputs, an input's ``_shape/_strides/_ndim`` used and no attribute named, the
    signature closes after the first output and the result does not compile.
    ``ensure_row_contiguous`` does not change the text (only what MLX copies); it is accepted
    so callers can pass a kernel's full configuration.
    """
    del ensure_row_contiguous
    if not output_names:
        raise ValueError("[metal_kernel] Must specify at least one output.")
    if output_dtypes is None:
        output_dtypes = ["float32"] * len(output_names)
    infos = shape_infos(input_names, source)
    attrs = [f"  {t} {a} [[{a}]]" for a, t in METAL_ATTRIBUTES if a in source]
    kname = kernel_name(name, inputs, output_dtypes, template)
    text = header
    if template:
        text += "template <" + ", ".join(f"{template_value(v)[0]} {n}" for n, v in template) + ">\n"
    text += f"[[kernel]] void {kname}(\n"
    index = 0
    for n, x, (sh, st, nd) in zip(input_names, inputs, infos):
        location = "constant" if _size(x.shape) < MAX_CONSTANT_ARRAY_SIZE else "device"
        ref = "&" if len(x.shape) == 0 else "*"
        text += f"  const {location} {type_name(x.dtype)}{ref} {n} [[buffer({index})]],\n"
        index += 1
        if len(x.shape) > 0:
            for used, decl in ((sh, f"const constant int* {n}_shape"),
                               (st, f"const constant int64_t* {n}_strides"),
                               (nd, f"const constant int& {n}_ndim")):
                if used:
                    text += f"  {decl} [[buffer({index})]],\n"
                    index += 1
    for n, dt in zip(output_names, output_dtypes):
        t = type_name(dt)
        t = f"atomic<{t}>" if atomic_outputs else t
        text += f"  device {t}* {n} [[buffer({index})]]"
        # MLX compares the buffer index (which counts shape/stride/ndim buffers) with the
        # number of inputs + outputs: this is the source of its malformed-signature bug.
        text += ",\n" if index < len(inputs) + len(output_names) - 1 or attrs else ") {\n"
        index += 1
    if attrs:
        text += ",\n".join(attrs) + ") {\n"
    text += source + "\n}\n"
    if template:
        inst = kname + "<" + ", ".join(template_value(v)[1] for _, v in template) + ">"
        text += (f'\ntemplate [[host_name("{kname}")]] [[kernel]] decltype({inst}) {inst};\n')
    return text
