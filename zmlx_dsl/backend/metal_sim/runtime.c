/* metal-sim runtime: runs a compiled kernel over a Metal grid, one fiber per GPU thread.
 *
 * Single-threaded and cooperative: a fiber runs until it exits, waits at threadgroup_barrier,
 * or enters a simdgroup collective. Faults (guard pages, null pointers, division by zero,
 * fiber stack overflow) are caught with a signal handler and reported instead of crashing.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#if !defined(__x86_64__)
#error "metal-sim: only x86-64 fibers are implemented"
#endif

typedef struct { uint32_t x, y, z; } zu3;

/* Per-thread attribute values, read by the generated entry point (layout mirrored in compat.h). */
typedef struct {
  zu3 tpig, tptg, tgpig, tpg, tptg_size, dtptg, tgpg;
  uint32_t tiitg, tiisg, sgiitg, sgptg, qgiitg, tiiqg, qgptg, dqgptg, dsgptg;
} zsim_attrs;

typedef struct {
  uint32_t mask, lane;
  const unsigned char *vals[32];
} zsim_coll;

typedef struct {
  int code, sig, write, tg_bytes;
  uint64_t addr;
  zu3 thread, group;
  char msg[1024];
} zsim_err;

enum { READY, BARRIER, COLL, DONE };
enum { MAX_THREADS = 1024, STACK = 128 * 1024, GUARD = 4096, ARENA = 64 * 1024, TG_LIMIT = 32 * 1024 };

typedef struct {
  void *sp;
  int state, line, kind, parity;
  uint32_t ncoll;
  zsim_attrs attrs;
  zsim_coll view;
  unsigned char slot[2][64];
} fiber;

typedef void (*entry_fn)(void **bufs, const zsim_attrs *a);

static fiber fibers[MAX_THREADS];
static char *stacks;
static void *sched_sp;
static fiber *cur;
static entry_fn cur_entry;
static void **cur_bufs;
static sigjmp_buf fault_jmp;
static volatile sig_atomic_t fault_sig;
static void *volatile fault_addr;
static unsigned char arena[ARENA] __attribute__((aligned(64)));
static size_t arena_used, arena_dirty;
static int slot_key[64];
static size_t slot_off[64];
static int nslots;
static zsim_err *err;

void zsim_switch(void **save, void *to);
__asm__(
    ".text\n.globl zsim_switch\n.type zsim_switch,@function\nzsim_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n  ret\n");

static void fiber_main(void) {
  cur_entry(cur_bufs, &cur->attrs);
  cur->state = DONE;
  zsim_switch(&cur->sp, sched_sp);
}

static void fiber_init(fiber *f, int i) {
  uintptr_t top = (uintptr_t)(stacks + (size_t)(i + 1) * (STACK + GUARD));
  void **sp = (void **)top;
  *--sp = 0;                  /* fake return address of fiber_main */
  *--sp = (void *)fiber_main; /* popped by ret */
  for (int r = 0; r < 6; r++) *--sp = 0;
  f->sp = sp;
  f->state = READY;
  f->ncoll = 0;
}

static volatile sig_atomic_t fault_write;
static void on_fault(int sig, siginfo_t *si, void *uc) {
  fault_write = (((ucontext_t *)uc)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
  fault_sig = sig;
  fault_addr = si->si_addr;
  siglongjmp(fault_jmp, 1);
}

static int setup(void) {
  static int done;
  if (done) return 0;
  stacks = mmap(0, (size_t)MAX_THREADS * (STACK + GUARD), PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (stacks == MAP_FAILED) return -1;
  for (int i = 0; i < MAX_THREADS; i++) mprotect(stacks + (size_t)i * (STACK + GUARD), GUARD, PROT_NONE);
  static char altstack[64 * 1024];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  sigaltstack(&ss, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP};
  for (unsigned i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, 0);
  memset(arena, 0xFF, sizeof arena);
  done = 1;
  return 0;
}

/* ---- called from kernels ------------------------------------------------------------------ */

void zsim_barrier(int line) {
  cur->state = BARRIER;
  cur->line = line;
  zsim_switch(&cur->sp, sched_sp);
}

const zsim_coll *zsim_collective(int line, int kind, const void *v, int n) {
  fiber *f = cur;
  f->parity = f->ncoll & 1;
  memcpy(f->slot[f->parity], v, (size_t)n);
  f->ncoll++;
  f->state = COLL;
  f->line = line;
  f->kind = kind;
  zsim_switch(&f->sp, sched_sp);
  return &f->view;
}

/* Threadgroup memory for the declaration `key`: the same address for every thread of the group. */
void *zsim_tg_slot(int key, unsigned long size, unsigned long align) {
  for (int i = 0; i < nslots; i++)
    if (slot_key[i] == key) return arena + slot_off[i];
  size_t off = (arena_used + align - 1) & ~(align - 1);
  if (off + size > TG_LIMIT || nslots == 64) {
    err->code = 3;
    err->tg_bytes = (int)(off + size);
    siglongjmp(fault_jmp, 2);
  }
  slot_key[nslots] = key;
  slot_off[nslots++] = off;
  arena_used = off + size;
  if (arena_used > arena_dirty) arena_dirty = arena_used;
  return arena + off;
}

/* ---- scheduler ---------------------------------------------------------------------------- */

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  err->code = 2;
  siglongjmp(fault_jmp, 2);
}

/* All live lanes are blocked: complete every pending collective, grouped by call site. */
static int resolve_collectives(int n) {
  int any = 0;
  for (int base = 0; base < n; base += 32) {
    int end = base + 32 < n ? base + 32 : n;
    for (int i = base; i < end; i++) {
      fiber *f = &fibers[i];
      if (f->state != COLL) continue;
      uint32_t mask = 0;
      const unsigned char *vals[32] = {0};
      for (int j = i; j < end; j++) {
        fiber *g = &fibers[j];
        if (g->state == COLL && g->line == f->line && g->kind == f->kind) {
          mask |= 1u << (j - base);
          vals[j - base] = g->slot[g->parity];
        }
      }
      for (int j = i; j < end; j++) {
        if (!(mask >> (j - base) & 1)) continue;
        fiber *g = &fibers[j];
        g->view.mask = mask;
        g->view.lane = (uint32_t)(j - base);
        memcpy(g->view.vals, vals, sizeof vals);
        g->state = READY;
      }
      any = 1;
    }
  }
  return any;
}

static void release_barrier(int n) {
  int live = 0, done = 0, line = -1, other = -1, nline = 0, nother = 0;
  for (int i = 0; i < n; i++) {
    if (fibers[i].state == DONE) { done++; continue; }
    live++;
    if (line < 0 || fibers[i].line == line) { line = fibers[i].line; nline++; }
    else { other = fibers[i].line; nother++; }
  }
  if (!live) return;
  if (done)
    fail("threadgroup_barrier at @L%d is reached by only %d of the %d threads of the threadgroup "
         "(the other %d returned): a barrier must be reached by all threads",
         line, live, n, done);
  if (other >= 0)
    fail("threads of one threadgroup wait at different barriers: %d at @L%d and %d at @L%d",
         nline, line, nother, other);
  for (int i = 0; i < n; i++) fibers[i].state = READY;
}

static void run_group(int n, int reverse) {
  for (;;) {
    int ran = 0, live = 0;
    for (int k = 0; k < n; k++) {
      fiber *f = &fibers[reverse ? n - 1 - k : k];
      if (f->state == READY) {
        cur = f;
        zsim_switch(&sched_sp, f->sp);
        ran = 1;
      }
      live += f->state != DONE;
    }
    if (!live) return;
    if (ran) continue;
    if (resolve_collectives(n)) continue;
    release_barrier(n);
  }
}

static uint32_t cdiv(uint32_t a, uint32_t b) { return (a + b - 1) / b; }

/* Run `entry` over `grid` threads in groups of `tg` (already clipped to the grid, as MLX does). */
int zsim_launch(entry_fn entry, void **bufs, const uint32_t *grid, const uint32_t *tg, int reverse,
                zsim_err *e) {
  err = e;
  memset(e, 0, sizeof *e);
  if (setup()) { e->code = 4; return 4; }
  cur_entry = entry;
  cur_bufs = bufs;
  zu3 ng = {cdiv(grid[0], tg[0]), cdiv(grid[1], tg[1]), cdiv(grid[2], tg[2])};
  uint64_t ngroups = (uint64_t)ng.x * ng.y * ng.z;
  zu3 gpos = {0, 0, 0};
  if (sigsetjmp(fault_jmp, 1)) {
    if (e->code == 0) {
      e->code = 1;
      e->sig = fault_sig;
      e->addr = (uint64_t)(uintptr_t)fault_addr;
      e->write = fault_write;
      uintptr_t a = (uintptr_t)fault_addr, s = (uintptr_t)stacks;
      if (a >= s && a < s + (size_t)MAX_THREADS * (STACK + GUARD) && (a - s) % (STACK + GUARD) < GUARD)
        e->code = 5; /* fiber stack overflow */
    }
    if (cur) e->thread = cur->attrs.tpig;
    e->group = gpos;
    return e->code;
  }
  for (uint64_t gi = 0; gi < ngroups; gi++) {
    uint64_t g = reverse ? ngroups - 1 - gi : gi;
    gpos.x = (uint32_t)(g % ng.x);
    gpos.y = (uint32_t)(g / ng.x % ng.y);
    gpos.z = (uint32_t)(g / ((uint64_t)ng.x * ng.y));
    zu3 sz = {tg[0], tg[1], tg[2]};
    if ((gpos.x + 1) * tg[0] > grid[0]) sz.x = grid[0] - gpos.x * tg[0];
    if ((gpos.y + 1) * tg[1] > grid[1]) sz.y = grid[1] - gpos.y * tg[1];
    if ((gpos.z + 1) * tg[2] > grid[2]) sz.z = grid[2] - gpos.z * tg[2];
    int n = (int)(sz.x * sz.y * sz.z);
    uint32_t nsg = cdiv((uint32_t)n, 32), nqg = cdiv((uint32_t)n, 4);
    uint32_t dn = tg[0] * tg[1] * tg[2];
    memset(arena, 0xFF, arena_dirty);
    arena_used = 0;
    arena_dirty = 0;
    nslots = 0;
    cur = 0;
    for (int i = 0; i < n; i++) {
      fiber *f = &fibers[i];
      zsim_attrs *a = &f->attrs;
      a->tptg = (zu3){i % sz.x, i / sz.x % sz.y, i / (sz.x * sz.y)};
      a->tgpig = gpos;
      a->tpig = (zu3){gpos.x * tg[0] + a->tptg.x, gpos.y * tg[1] + a->tptg.y, gpos.z * tg[2] + a->tptg.z};
      a->tpg = (zu3){grid[0], grid[1], grid[2]};
      a->tptg_size = sz;
      a->dtptg = (zu3){tg[0], tg[1], tg[2]};
      a->tgpg = ng;
      a->tiitg = (uint32_t)i;
      a->tiisg = (uint32_t)i % 32;
      a->sgiitg = (uint32_t)i / 32;
      a->sgptg = nsg;
      a->qgiitg = (uint32_t)i / 4;
      a->tiiqg = (uint32_t)i % 4;
      a->qgptg = nqg;
      a->dqgptg = cdiv(dn, 4);
      a->dsgptg = cdiv(dn, 32);
      fiber_init(f, i);
    }
    run_group(n, reverse);
  }
  return 0;
}

/* float -> bfloat16, round to nearest even: clang emits calls to this on x86-64. */
__bf16 __truncsfbf2(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t h = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40)
                                                : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
  __bf16 b;
  memcpy(&b, &h, 2);
  return b;
}
