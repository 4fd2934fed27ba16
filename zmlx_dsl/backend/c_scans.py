"""The row writer's scans and sorts (backend/c_rows.py): each whole-row node (ir/scans.py) is
computed in a pass of its own into a threadgroup array of the row, which later passes read at
any position. A scan: each thread scans a run of consecutive positions after the total of the
runs before it (a simdgroup prefix over the threads' totals, then one across simdgroups). An
argsort: a bitonic network over (key, position) pairs, which orders ties by position and NaN last
(stable, as MLX's). The argsort of a permutation (a sort's inverse) is written directly."""
from __future__ import annotations

import math

from ..errors import ZMLXBackendError
from ..ir import dtypes as dt
from ..ir import scans
from ..ir.build import const
from ..ir.node import Node
from ..ir.positions import gather
from ..ir.registry import OPS


def scratch_name(d: dt.DType) -> str:
    """The shared array through which simdgroups combine partial reductions (and scans) of dtype d."""
    return "zmlx_scratch" if d == dt.float32 else f"zmlx_scratch_{d.name}"

# Each scan kind combines by this registry op (the C spelling of which does it, NaN-exact).
COMBINE = {"cumsum": "add", "cumprod": "mul", "cummax": "maximum", "cummin": "minimum", "logcumsumexp": "logaddexp"}


def read_elsewhere(order: list[Node]) -> set[Node]:
    """The values some thread needs at positions other than its own: what a gather reads (`at`'s
    row, evaluated at its positions) or a scatter compares, down to the whole-row values (whose own
    operands are read in their own pass)."""
    out: set[Node] = set()
    todo = [a for m in order if m.op in OPS and OPS[m.op].position and not OPS[m.op].whole_row
            for a in (m.args[:1] if m.op == "at" else m.args)]
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            if not (n.op in OPS and OPS[n.op].whole_row):
                todo.extend(n.args)
    return out


class WholeRows:
    """Scans and sorts inside a RowWriter, whose state it uses (c, lines, top, state, plan, names,
    length, element_loop, shift). `stored`: each whole-row node computed so far (and a sort's
    sorted keys), with the threadgroup array holding its row."""

    def init_whole_rows(self, order: list[Node]) -> None:
        self.whole = [n for n in order if n.op in OPS and OPS[n.op].whole_row]
        self.stored: dict[Node, str] = {}
        self.array_types: dict[str, str] = {}  # each threadgroup array's element type
        self.registered: set[Node] = set()  # the scans held in registers (register_scan)
        self.shared_bytes = 0
        self.read_elsewhere = read_elsewhere(order)
        for n in self.whole:
            if n.dtype.bits == 64 or n.args[0].dtype.bits == 64:
                raise ZMLXBackendError(f"{n.op} of {n.args[0].dtype.name} rows is not supported on the "
                                       f"{self.c.backend} backend (64-bit simdgroup exchanges); compute it in "
                                       "int32 (.astype(mx.int32)) or use backend='mlx'")

    def stored_at(self, local: dict, length: int, pos: str) -> None:
        """Bind, in `local`, the stored rows to their values at position `pos` of a row of `length`
        (a stored row of one broadcasts)."""
        for n in self.stored:
            if self.length.get(n) in (length, 1):
                local[n] = self.read_stored(n, pos if self.length[n] == length else "0")

    def read_stored(self, n: Node, pos: str) -> str:
        """Stored row n at position pos, in n's own type (positions are stored as 16-bit where the
        row allows: read back as int, which the integer helpers' templates need)."""
        array, ctype = self.stored[n], self.c.ctype(n.dtype)
        read = f"{array}[{pos}]"
        return read if self.array_types.get(array, ctype) == ctype else f"{ctype}({read})"

    def shared_array(self, name: str, ctype: str, itemsize: int, count: int) -> str:
        """Declare a threadgroup array (checked against the backend's threadgroup memory)."""
        self.shared_bytes += count * itemsize
        self.array_types[name] = ctype
        limit = self.c.shared_memory
        if self.shared_bytes > limit:
            raise ZMLXBackendError(
                f"the scans and sorts of rows of {self.plan.rowsize} need {math.ceil(self.shared_bytes / 1024)} KiB of "
                f"threadgroup memory, more than the {limit // 1024} KiB of the {self.c.backend} backend "
                "(each scan or sort holds its row there); use shorter rows, fewer scans or sorts per kernel, "
                "or backend='mlx'")
        self.top.append(f"  {self.c.shared} {ctype} {name}[{count}];")
        return name

    def whole_row(self, n: Node) -> None:
        """Compute the whole-row node n into a threadgroup array (after which every thread reads it)."""
        k = len(self.stored) + len(self.registered)
        if self.in_registers(n):
            return self.register_scan(n, f"zmlx_{n.op}{k}")
        if n.op == "argsort" and n.args[0].op == "argsort":
            self.inverse_permutation(n, f"zmlx_inverse{k}")
        elif n.op == "argsort":
            self.sort(n, f"zmlx_sort{k}")
        else:
            self.scan(n, f"zmlx_{n.op}{k}")
        self.names[n] = self.read_stored(n, "i")  # (read at each loop's own position: stored_at)

    def fill(self, operand: Node, store) -> None:
        """A pass over the operand's row: store(value, position, indent) at each position."""
        def tail(vals: dict, ind: str) -> None:
            store(vals[operand], f"i + {self.shift}" if self.shift else "i", ind)
        self.element_loop([operand], self.length[operand], tail)

    # ---- scans -----------------------------------------------------------------------------
    def scan(self, n: Node, name: str) -> None:
        c, L, (length, reverse, inclusive) = self.c, self.lines, n.arg
        ct = c.ctype(n.dtype)
        array = self.shared_array(name, ct, n.dtype.itemsize, length)
        self.fill(n.args[0], lambda v, pos, ind: L.append(f"{ind}{array}[{pos}] = {v};"))
        L.append(f"  {c.barrier}")
        op = COMBINE[n.op]
        template = c.spellings[op].template(n.dtype.kind)
        c.note_helpers(template, self.state)

        def combine(a: str, b: str) -> str:
            return template.format(a, b)
        identity = self.scan_identity(n)
        threads = self.plan.threads
        run = -(-length // threads)  # positions per thread
        at = (lambda q: f"{array}[{length - 1} - {q}]") if reverse else (lambda q: f"{array}[{q}]")
        lane = "lane" if threads > 32 else "lid"
        direction = "from the end" if reverse else "from the start"
        L += [f"  {{  // {n.op} {direction}, {'inclusive' if inclusive else 'exclusive'}: each thread scans "
              f"{run} consecutive positions after the totals of the threads before it",
              f"    const int lo = min(int(lid) * {run}, {length}), hi = min(lo + {run}, {length});",
              f"    {ct} total = {identity};",
              f"    for (int q = lo; q < hi; ++q) total = {combine('total', at('q'))};",
              f"    {ct} before = {identity};"]
        L += ["    " + line for line in self.threads_before("total", "before", n.dtype, combine, identity, lane)]
        step = [f"      before = {combine('before', 'value')};", f"      {at('q')} = before;"]
        L += ["    for (int q = lo; q < hi; ++q) {",
              f"      const {ct} value = {at('q')};"] + (step if inclusive else step[::-1]) + ["    }", "  }",
                                                                                          f"  {c.barrier}"]
        self.stored[n] = array

    def in_registers(self, n: Node) -> bool:
        """A forward scan over the whole row of a kernel that holds its row in registers, read only at
        its own positions, stays in registers (a vector per thread and tile, as the row's inputs)."""
        return (self.plan.cached and n.op != "argsort" and not n.arg[1] and n.arg[0] == self.plan.rowsize
                and n not in self.read_elsewhere)

    def register_scan(self, n: Node, name: str) -> None:
        """The scan, tile after tile of the row (one vector per thread each): each thread scans its
        vector after the total of the tiles before and of the threads before it in this tile."""
        c, L, (length, _, inclusive), plan = self.c, self.lines, n.arg, self.plan
        ct, vec, threads = c.ctype(n.dtype), plan.vec, plan.threads
        L.append(f"  {self.vtype(n.dtype)} {name}_r[{self.KV}];")
        self.fill(n.args[0], lambda v, pos, ind: L.append(f"{ind}{name}_r[k].v[j] = {v};"))
        template = c.spellings[COMBINE[n.op]].template(n.dtype.kind)
        c.note_helpers(template, self.state)

        def combine(a: str, b: str) -> str:
            return template.format(a, b)
        identity = self.scan_identity(n)
        tile = self.shared_array(f"{name}_tile", ct, n.dtype.itemsize, 1)
        lane = "lane" if threads > 32 else "lid"
        at = f"{name}_r[k].v[j]"
        step = [f"          before = {combine('before', 'value')};", f"          {at} = before;"]
        L += [f"  {{  // {n.op} from the start, {'inclusive' if inclusive else 'exclusive'}, in registers: tile "
              f"by tile of {threads * vec}, each thread's vector after the tiles and the threads before it",
              f"    {ct} carry = {identity};",
              f"    for (int k = 0; k < {self.KV}; ++k) {{",
              f"      const bool here = lid + k * {threads} < {length // vec};",
              f"      {ct} total = {identity};",
              f"      if (here) for (int j = 0; j < {vec}; ++j) total = {combine('total', at)};",
              f"      {ct} before = {identity};"]
        L += ["      " + line for line in self.threads_before("total", "before", n.dtype, combine, identity, lane)]
        L += [f"      if (lid == {threads - 1}) {tile}[0] = {combine('before', 'total')};",
              f"      before = {combine('carry', 'before')};",
              "      if (here) {",
              f"        for (int j = 0; j < {vec}; ++j) {{",
              f"          const {ct} value = {at};"] + (step if inclusive else step[::-1]) + [
              "        }",
              "      }",
              f"      {c.barrier}",
              f"      carry = {combine('carry', f'{tile}[0]')};",
              f"      {c.barrier}",
              "    }",
              "  }"]
        self.registered.add(n)
        self.names[n] = at

    def scan_identity(self, n: Node) -> str:
        """What a scan starts from, spelled for its type (the integer limits as C writes them)."""
        value = scans.identity(n.op, n.dtype)
        if n.dtype.is_int and value == n.dtype.limits[0] and n.dtype.kind == "i":
            return f"({value + 1} - 1)"  # (-2147483648 is not an int literal in C)
        return self.c.literal(const(value, n.dtype))

    def threads_before(self, total: str, before: str, d: dt.DType, combine, identity: str,
                       lane: str) -> list[str]:
        """Lines setting `before` to the combination of the `total`s of the threads before this one
        (in thread order): a prefix within each simdgroup, and across simdgroups through memory."""
        c, threads, ct = self.c, self.plan.threads, self.c.ctype(d)
        up = c.shuffle_up
        lines = [f"{ct} upto = {total};  // this thread's total with those before it in its simdgroup",
                 "for (int d = 1; d < 32; d <<= 1) {",
                 f"  const {ct} other = {up.format('upto', 'd')};",
                 f"  if ({lane} >= d) upto = {combine('other', 'upto')};",
                 "}",
                 f"{before} = {up.format('upto', '1')};",
                 f"if ({lane} == 0) {before} = {identity};"]
        if threads <= 32:
            return lines
        scratch, warps = scratch_name(d), threads // 32
        return lines + [
            f"if (lane == 31) {scratch}[warp] = upto;",
            c.barrier,
            "if (warp == 0) {  // the simdgroups' totals, scanned",
            f"  {ct} w = lane < {warps} ? {scratch}[lane] : {identity};",
            "  for (int d = 1; d < 32; d <<= 1) {",
            f"    const {ct} other = {up.format('w', 'd')};",
            f"    if (lane >= d) w = {combine('other', 'w')};",
            "  }",
            f"  if (lane < {warps}) {scratch}[lane] = w;",
            "}",
            c.barrier,
            f"if (warp > 0) {before} = {combine(f'{scratch}[warp - 1]', before)};"]

    # ---- sorts -----------------------------------------------------------------------------
    def sort(self, n: Node, name: str) -> None:
        """argsort: (key, position) pairs of the row padded to a power of two, sorted by a bitonic
        network; position q of the order is then the array of positions at q."""
        c, L, length, key = self.c, self.lines, n.arg, n.args[0]
        width = 1 << max(1, (length - 1).bit_length())
        kt = c.ctype(key.dtype)
        pt, psize = (c.ushort, 2) if width <= 65536 else ("int", 4)
        keys = self.shared_array(f"{name}_keys", kt, key.dtype.itemsize, width)
        order = self.shared_array(name, pt, psize, width)

        def store(v: str, pos: str, ind: str) -> None:
            L.extend([f"{ind}{keys}[{pos}] = {v};", f"{ind}{order}[{pos}] = {pos};"])
        self.fill(key, store)
        if width > length:  # the padding sorts after every element (by position: see the comparison)
            L.append(f"  for (int q = {length} + int(lid); q < {width}; q += {self.plan.threads}) "
                     f"{{ {keys}[q] = {c.literal(const(0, key.dtype))}; {order}[q] = q; }}")
        L.append(f"  {c.barrier}")
        if key.dtype.is_float:  # b before a: NaN last, ties and padding by position
            first = ("(pb >= {n} || pa >= {n}) ? pb < pa : (isnan(ka) || isnan(kb)) ? "
                     "(isnan(ka) && (!isnan(kb) || pb < pa)) : (kb < ka || (kb == ka && pb < pa))").format(n=length)
        else:
            first = f"(pb >= {length} || pa >= {length}) ? pb < pa : (kb < ka || (kb == ka && pb < pa))"
        L += [f"  // argsort of a row of {length}: a bitonic network over {width} (key, position) pairs; "
              "ties (and the padding) by position, NaN last",
              f"  for (int k = 2; k <= {width}; k <<= 1) {{",
              "    for (int j = k >> 1; j > 0; j >>= 1) {",
              f"      for (int t = int(lid); t < {width // 2}; t += {self.plan.threads}) {{",
              "        const int a = ((t & ~(j - 1)) << 1) | (t & (j - 1)), b = a + j;",
              f"        const {kt} ka = {keys}[a], kb = {keys}[b];",
              f"        const int pa = {order}[a], pb = {order}[b];",
              f"        const bool b_first = {first};",
              "        if (b_first == ((a & k) == 0)) {",
              f"          {keys}[a] = kb; {keys}[b] = ka; {order}[a] = pb; {order}[b] = pa;",
              "        }",
              "      }",
              "      // the next stage within 64 positions too: each simdgroup's 32 pairs stay in their own 64",
              f"      if (j <= 32 && (j > 1 || k <= 32)) {{ {c.warp_barrier} }} else {{ {c.barrier} }}",
              "    }",
              "  }"]
        if self.plan.threads > 32:
            L.append(f"  {c.barrier}")
        self.stored[n] = order
        self.stored[gather(key, n, length)] = keys  # the sorted row itself: x at its order
        self.names[gather(key, n, length)] = f"{keys}[i]"

    def inverse_permutation(self, n: Node, name: str) -> None:
        """argsort of a permutation P (a sort's order): at P[q], q, written by one pass over P."""
        c, L, length, perm = self.c, self.lines, n.arg, n.args[0]
        array = self.shared_array(name, *((c.ushort, 2) if length <= 65536 else ("int", 4)), length)
        self.fill(perm, lambda v, pos, ind: L.append(f"{ind}{array}[{v}] = {pos};"))
        L.append(f"  {c.barrier}")
        self.stored[n] = array
