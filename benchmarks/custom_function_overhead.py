"""A/B of MLX custom_function call overhead (see RESULTS.md): compiled body vs custom_function
without and with registered transforms, interleaved in one process."""
import mlx.core as mx, time, statistics
def f(x, y):
    return x * mx.sigmoid(y)
x = mx.random.normal((16,))
c = mx.compile(f)
def mk(vjp, jvp, vmap):
    g = mx.custom_function(lambda *a: [c(*a)])
    if vjp: g.vjp(lambda p, ct, o: [ct[0], ct[0]])
    if jvp: g.jvp(lambda p, t: [t[0]])
    if vmap: g.vmap(lambda i, a: ([c(*i)], [0]))
    return g
fns = {"compiled": lambda: c(x, x), "cf none": (lambda g: lambda: g(x, x))(mk(0,0,0)),
       "cf vjp": (lambda g: lambda: g(x, x))(mk(1,0,0)), "cf all": (lambda g: lambda: g(x, x))(mk(1,1,1))}
ts = {k: [] for k in fns}
for _ in range(200):
    for k, fn in fns.items():
        a = time.perf_counter()
        for _ in range(20): mx.eval(fn())
        ts[k].append((time.perf_counter() - a) / 20)
for k, v in ts.items(): print(k, round(statistics.median(v) * 1e6, 1))
