// metal-sim: the subset of the Metal Shading Language (and MLX's kernel preamble) that custom
// kernels use, as C++14 for clang. Address spaces are clang address-space attributes so
// device/constant/threadgroup misuse fails to compile as on Metal. No system headers.
#pragma once
#pragma clang diagnostic ignored "-Wunknown-attributes"
#pragma clang diagnostic ignored "-Wuser-defined-literals"

typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long uint64_t;
typedef unsigned long size_t;
typedef long ptrdiff_t;
typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;
typedef _Float16 half;
typedef __bf16 bfloat;
typedef half float16_t;
typedef bfloat bfloat16_t;

#define device __attribute__((address_space(1)))
#define constant __attribute__((address_space(2)))
#define threadgroup __attribute__((address_space(3)))
#define thread
#define METAL_FUNC inline __attribute__((always_inline))
#define INFINITY __builtin_inff()
#define NAN __builtin_nanf("")
#define MAXFLOAT 0x1.fffffep+127f
#define HUGE_VALF __builtin_inff()
#define FLT_MAX 0x1.fffffep+127f
#define FLT_MIN 0x1p-126f
#define FLT_EPSILON 0x1p-23f
#define HALF_MAX ((half)65504.0f)
#define HALF_MIN ((half)0x1p-14f)
#define HALF_EPSILON ((half)0x1p-10f)
#define M_E_F 2.71828182845904523536f
#define M_LOG2E_F 1.44269504088896340736f
#define M_LOG10E_F 0.434294481903251827651f
#define M_LN2_F 0.693147180559945309417f
#define M_LN10_F 2.30258509299404568402f
#define M_PI_F 3.14159265358979323846f
#define M_PI_2_F 1.57079632679489661923f
#define M_PI_4_F 0.785398163397448309616f
#define M_1_PI_F 0.318309886183790671538f
#define M_2_PI_F 0.636619772367581343076f
#define M_2_SQRTPI_F 1.12837916709551257390f
#define M_SQRT2_F 1.41421356237309504880f
#define M_SQRT1_2_F 0.707106781186547524401f

inline half operator"" h(long double x) { return (half)(float)x; }
inline bfloat operator"" bf(long double x) { return (bfloat)(float)x; }

template <class T, int N> using vec = T __attribute__((ext_vector_type(N)));
#define ZSIM_VEC(T)                                 \
  typedef T T##2 __attribute__((ext_vector_type(2))); \
  typedef T T##3 __attribute__((ext_vector_type(3))); \
  typedef T T##4 __attribute__((ext_vector_type(4)));
ZSIM_VEC(float) ZSIM_VEC(half) ZSIM_VEC(bfloat) ZSIM_VEC(int) ZSIM_VEC(uint) ZSIM_VEC(short)
ZSIM_VEC(ushort) ZSIM_VEC(char) ZSIM_VEC(uchar) ZSIM_VEC(long) ZSIM_VEC(ulong) ZSIM_VEC(bool)

// ---- runtime interface (runtime.c) ----------------------------------------------------------
struct zsim_u3 { uint x, y, z; };
struct zsim_attrs {
  zsim_u3 tpig, tptg, tgpig, tpg, tptg_size, dtptg, tgpg;
  uint tiitg, tiisg, sgiitg, sgptg, qgiitg, tiiqg, qgptg, dqgptg, dsgptg;
};
struct zsim_coll { uint mask, lane; const unsigned char* vals[32]; };
extern "C" {
void zsim_barrier(int line);
const zsim_coll* zsim_collective(int line, int kind, const void* v, int n);
void* zsim_tg_slot(int key, unsigned long size, unsigned long align);
}

namespace zsim {
template <class T> struct id { typedef T type; };
template <class T> struct vinfo {
  typedef T elem;
  enum { n = 1 };
  static T get(T a, int) { return a; }
};
template <class T, int N> struct vinfo<T __attribute__((ext_vector_type(N)))> {
  typedef T elem;
  enum { n = N };
  static T get(vec<T, N> a, int i) { return a[i]; }
};
template <class E> METAL_FUNC void put(E*, int&) {}
template <class E, class A, class... R> METAL_FUNC void put(E* c, int& k, A a, R... r) {
  for (int i = 0; i < vinfo<A>::n; ++i) c[k++] = (E)vinfo<A>::get(a, i);
  put(c, k, r...);
}
// Metal's vector constructors: float4(x), float4(v3, w), float4(half4), float2(a, b) ...
template <class V, class... A> METAL_FUNC V make(A... a) {
  typedef typename vinfo<V>::elem E;
  E c[16];
  int k = 0;
  put(c, k, a...);
  V r;
  for (int i = 0; i < vinfo<V>::n; ++i) r[i] = c[k == 1 ? 0 : i];
  return r;
}
template <class T> METAL_FUNC T load(const unsigned char* p) {
  T t;
  __builtin_memset(&t, 0xFF, sizeof(T));  // an absent lane reads as poison
  if (p) __builtin_memcpy(&t, p, sizeof(T));
  return t;
}
}  // namespace zsim

#define float2(...) zsim::make<::float2>(__VA_ARGS__)
#define float3(...) zsim::make<::float3>(__VA_ARGS__)
#define float4(...) zsim::make<::float4>(__VA_ARGS__)
#define half2(...) zsim::make<::half2>(__VA_ARGS__)
#define half3(...) zsim::make<::half3>(__VA_ARGS__)
#define half4(...) zsim::make<::half4>(__VA_ARGS__)
#define bfloat2(...) zsim::make<::bfloat2>(__VA_ARGS__)
#define bfloat3(...) zsim::make<::bfloat3>(__VA_ARGS__)
#define bfloat4(...) zsim::make<::bfloat4>(__VA_ARGS__)
#define int2(...) zsim::make<::int2>(__VA_ARGS__)
#define int3(...) zsim::make<::int3>(__VA_ARGS__)
#define int4(...) zsim::make<::int4>(__VA_ARGS__)
#define uint2(...) zsim::make<::uint2>(__VA_ARGS__)
#define uint3(...) zsim::make<::uint3>(__VA_ARGS__)
#define uint4(...) zsim::make<::uint4>(__VA_ARGS__)
#define short2(...) zsim::make<::short2>(__VA_ARGS__)
#define short4(...) zsim::make<::short4>(__VA_ARGS__)
#define ushort2(...) zsim::make<::ushort2>(__VA_ARGS__)
#define ushort4(...) zsim::make<::ushort4>(__VA_ARGS__)
#define char4(...) zsim::make<::char4>(__VA_ARGS__)
#define uchar4(...) zsim::make<::uchar4>(__VA_ARGS__)
#define long2(...) zsim::make<::long2>(__VA_ARGS__)
#define ulong2(...) zsim::make<::ulong2>(__VA_ARGS__)
#define bool2(...) zsim::make<::bool2>(__VA_ARGS__)
#define bool3(...) zsim::make<::bool3>(__VA_ARGS__)
#define bool4(...) zsim::make<::bool4>(__VA_ARGS__)

namespace metal {
// ---- numeric limits --------------------------------------------------------------------------
template <class T> struct numeric_limits;
#define ZSIM_LIMITS(T, LO, HI, INF, NANV, EPS)                    \
  template <> struct numeric_limits<T> {                           \
    static constexpr T min() { return LO; }                        \
    static constexpr T lowest() { return -(HI); }                  \
    static constexpr T max() { return HI; }                        \
    static constexpr T infinity() { return INF; }                  \
    static constexpr T quiet_NaN() { return NANV; }                \
    static constexpr T epsilon() { return EPS; }                   \
    static constexpr bool is_integer = false;                      \
  };
ZSIM_LIMITS(float, 0x1p-126f, 0x1.fffffep+127f, __builtin_inff(), __builtin_nanf(""), 0x1p-23f)
ZSIM_LIMITS(half, (half)0x1p-14f, (half)65504.0f, (half)__builtin_inff(), (half)__builtin_nanf(""), (half)0x1p-10f)
ZSIM_LIMITS(bfloat, (bfloat)0x1p-126f, (bfloat)0x1.fep+127f, (bfloat)__builtin_inff(), (bfloat)__builtin_nanf(""), (bfloat)0x1p-7f)
#define ZSIM_ILIMITS(T, LO, HI)                        \
  template <> struct numeric_limits<T> {               \
    static constexpr T min() { return LO; }            \
    static constexpr T lowest() { return LO; }         \
    static constexpr T max() { return HI; }            \
    static constexpr bool is_integer = true;           \
  };
ZSIM_ILIMITS(bool, false, true)
ZSIM_ILIMITS(int8_t, -128, 127)
ZSIM_ILIMITS(uint8_t, 0, 255)
ZSIM_ILIMITS(int16_t, -32768, 32767)
ZSIM_ILIMITS(uint16_t, 0, 65535)
ZSIM_ILIMITS(int32_t, -2147483647 - 1, 2147483647)
ZSIM_ILIMITS(uint32_t, 0u, 4294967295u)
ZSIM_ILIMITS(int64_t, -9223372036854775807L - 1, 9223372036854775807L)
ZSIM_ILIMITS(uint64_t, 0ul, 18446744073709551615ul)

template <class T, class U> METAL_FUNC T as_type(U u) {
  static_assert(sizeof(T) == sizeof(U), "as_type: sizes differ");
  T t;
  __builtin_memcpy(&t, &u, sizeof(T));
  return t;
}
template <class T> struct is_floating_point { static constexpr bool value = false; };
template <> struct is_floating_point<float> { static constexpr bool value = true; };
template <> struct is_floating_point<half> { static constexpr bool value = true; };
template <> struct is_floating_point<bfloat> { static constexpr bool value = true; };
template <class A, class B> struct is_same { static constexpr bool value = false; };
template <class A> struct is_same<A, A> { static constexpr bool value = true; };
template <bool B, class T = void> struct enable_if {};
template <class T> struct enable_if<true, T> { typedef T type; };

// ---- math: float builtins; half/bfloat computed in float and rounded; vectors per lane --------
#define ZSIM_VMAP1(name)                                                           \
  template <class T, int N> METAL_FUNC vec<T, N> name(vec<T, N> v) {               \
    vec<T, N> r;                                                                   \
    for (int i = 0; i < N; ++i) r[i] = name((T)v[i]);                              \
    return r;                                                                      \
  }
#define ZSIM_UNARY(name, expr)                                                     \
  METAL_FUNC float name(float x) { return expr; }                                  \
  METAL_FUNC half name(half x) { return (half)name((float)x); }                    \
  METAL_FUNC bfloat name(bfloat x) { return (bfloat)name((float)x); }             \
  ZSIM_VMAP1(name)
ZSIM_UNARY(acos, __builtin_acosf(x)) ZSIM_UNARY(acosh, __builtin_acoshf(x))
ZSIM_UNARY(asin, __builtin_asinf(x)) ZSIM_UNARY(asinh, __builtin_asinhf(x))
ZSIM_UNARY(atan, __builtin_atanf(x)) ZSIM_UNARY(atanh, __builtin_atanhf(x))
ZSIM_UNARY(ceil, __builtin_ceilf(x)) ZSIM_UNARY(cos, __builtin_cosf(x))
ZSIM_UNARY(cosh, __builtin_coshf(x)) ZSIM_UNARY(exp, __builtin_expf(x))
ZSIM_UNARY(exp2, __builtin_exp2f(x)) ZSIM_UNARY(exp10, __builtin_powf(10.0f, x))
ZSIM_UNARY(fabs, __builtin_fabsf(x)) ZSIM_UNARY(floor, __builtin_floorf(x))
ZSIM_UNARY(fract, __builtin_fminf(x - __builtin_floorf(x), 0x1.fffffep-1f))
ZSIM_UNARY(log, __builtin_logf(x)) ZSIM_UNARY(log2, __builtin_log2f(x))
ZSIM_UNARY(log10, __builtin_log10f(x)) ZSIM_UNARY(rint, __builtin_rintf(x))
ZSIM_UNARY(round, __builtin_roundf(x)) ZSIM_UNARY(rsqrt, 1.0f / __builtin_sqrtf(x))
ZSIM_UNARY(sin, __builtin_sinf(x)) ZSIM_UNARY(sinh, __builtin_sinhf(x))
ZSIM_UNARY(sqrt, __builtin_sqrtf(x)) ZSIM_UNARY(tan, __builtin_tanf(x))
ZSIM_UNARY(tanh, __builtin_tanhf(x)) ZSIM_UNARY(trunc, __builtin_truncf(x))
ZSIM_UNARY(saturate, __builtin_fminf(__builtin_fmaxf(x, 0.0f), 1.0f))
ZSIM_UNARY(sign, x > 0.0f ? 1.0f : x < 0.0f ? -1.0f : x)
ZSIM_UNARY(erf, __builtin_erff(x))
#define ZSIM_BINARY(name, expr)                                                    \
  METAL_FUNC float name(float x, float y) { return expr; }                         \
  METAL_FUNC half name(half x, half y) { return (half)name((float)x, (float)y); }  \
  METAL_FUNC bfloat name(bfloat x, bfloat y) { return (bfloat)name((float)x, (float)y); } \
  template <class T, int N> METAL_FUNC vec<T, N> name(vec<T, N> a, vec<T, N> b) {  \
    vec<T, N> r;                                                                   \
    for (int i = 0; i < N; ++i) r[i] = name((T)a[i], (T)b[i]);                     \
    return r;                                                                      \
  }
ZSIM_BINARY(pow, __builtin_powf(x, y)) ZSIM_BINARY(powr, __builtin_powf(x, y))
ZSIM_BINARY(atan2, __builtin_atan2f(x, y)) ZSIM_BINARY(fmax, __builtin_fmaxf(x, y))
ZSIM_BINARY(fmin, __builtin_fminf(x, y)) ZSIM_BINARY(fmod, __builtin_fmodf(x, y))
ZSIM_BINARY(copysign, __builtin_copysignf(x, y)) ZSIM_BINARY(fdim, __builtin_fdimf(x, y))
ZSIM_BINARY(step, y < x ? 0.0f : 1.0f)

template <class T> METAL_FUNC T abs(T x) { return x < T(0) ? -x : x; }
METAL_FUNC float abs(float x) { return __builtin_fabsf(x); }
ZSIM_VMAP1(abs)
template <class T> METAL_FUNC T max(T a, typename zsim::id<T>::type b) { return a < b ? b : a; }
template <class T> METAL_FUNC T min(T a, typename zsim::id<T>::type b) { return b < a ? b : a; }
METAL_FUNC float max(float a, float b) { return __builtin_fmaxf(a, b); }
METAL_FUNC float min(float a, float b) { return __builtin_fminf(a, b); }
METAL_FUNC half max(half a, half b) { return (half)__builtin_fmaxf(a, b); }
METAL_FUNC half min(half a, half b) { return (half)__builtin_fminf(a, b); }
METAL_FUNC bfloat max(bfloat a, bfloat b) { return (bfloat)__builtin_fmaxf(a, b); }
METAL_FUNC bfloat min(bfloat a, bfloat b) { return (bfloat)__builtin_fminf(a, b); }
template <class T, int N> METAL_FUNC vec<T, N> max(vec<T, N> a, vec<T, N> b) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = max((T)a[i], (T)b[i]);
  return r;
}
template <class T, int N> METAL_FUNC vec<T, N> min(vec<T, N> a, vec<T, N> b) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = min((T)a[i], (T)b[i]);
  return r;
}
template <class T, class U, class V> METAL_FUNC T clamp(T x, U lo, V hi) { return min(max(x, (T)lo), (T)hi); }
template <class T, class U> METAL_FUNC T mix(T x, T y, U a) { return x + (y - x) * a; }
template <class T, class M> METAL_FUNC T select(T a, T b, M c) { return c ? b : a; }
template <class T, int N, class M> METAL_FUNC vec<T, N> select(vec<T, N> a, vec<T, N> b, M c) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = c[i] ? b[i] : a[i];
  return r;
}
METAL_FUNC float fma(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
METAL_FUNC half fma(half a, half b, half c) { return (half)__builtin_fmaf(a, b, c); }
METAL_FUNC bfloat fma(bfloat a, bfloat b, bfloat c) { return (bfloat)__builtin_fmaf(a, b, c); }
template <class T, int N> METAL_FUNC vec<T, N> fma(vec<T, N> a, vec<T, N> b, vec<T, N> c) {
  vec<T, N> r;
  for (int i = 0; i < N; ++i) r[i] = fma((T)a[i], (T)b[i], (T)c[i]);
  return r;
}
template <class T> METAL_FUNC bool isnan(T x) { return __builtin_isnan((float)x); }
template <class T> METAL_FUNC bool isinf(T x) { return __builtin_isinf((float)x); }
template <class T> METAL_FUNC bool isfinite(T x) { return __builtin_isfinite((float)x); }
template <class T> METAL_FUNC bool signbit(T x) { return __builtin_signbit((float)x); }
template <class T, int N> METAL_FUNC vec<bool, N> isnan(vec<T, N> v) {
  vec<bool, N> r;
  for (int i = 0; i < N; ++i) r[i] = isnan((T)v[i]);
  return r;
}
template <class T> METAL_FUNC bool all(T v) {
  for (int i = 0; i < zsim::vinfo<T>::n; ++i) if (!zsim::vinfo<T>::get(v, i)) return false;
  return true;
}
template <class T> METAL_FUNC bool any(T v) {
  for (int i = 0; i < zsim::vinfo<T>::n; ++i) if (zsim::vinfo<T>::get(v, i)) return true;
  return false;
}
template <class T, int N> METAL_FUNC T dot(vec<T, N> a, vec<T, N> b) {
  T s = 0;
  for (int i = 0; i < N; ++i) s += a[i] * b[i];
  return s;
}
template <class T, int N> METAL_FUNC T length(vec<T, N> a) { return sqrt(dot(a, a)); }
template <class T, int N> METAL_FUNC vec<T, N> normalize(vec<T, N> a) { return a * rsqrt(dot(a, a)); }
template <class T> METAL_FUNC T popcount(T x) { return (T)__builtin_popcountll((unsigned long long)x & (~0ull >> (64 - 8 * sizeof(T)))); }
template <class T> METAL_FUNC T clz(T x) { return x ? (T)(__builtin_clzll((unsigned long long)x & (~0ull >> (64 - 8 * sizeof(T)))) - (64 - 8 * sizeof(T))) : (T)(8 * sizeof(T)); }
template <class T> METAL_FUNC T ctz(T x) { return x ? (T)__builtin_ctzll((unsigned long long)x) : (T)(8 * sizeof(T)); }

namespace fast {
using metal::acos; using metal::asin; using metal::atan; using metal::atan2; using metal::ceil;
using metal::cos; using metal::cosh; using metal::exp; using metal::exp2; using metal::exp10;
using metal::fabs; using metal::floor; using metal::fract; using metal::log; using metal::log2;
using metal::log10; using metal::pow; using metal::powr; using metal::rint; using metal::round;
using metal::rsqrt; using metal::sin; using metal::sinh; using metal::sqrt; using metal::tan;
using metal::tanh; using metal::trunc; using metal::max; using metal::min; using metal::fmax;
using metal::fmin; using metal::clamp; using metal::saturate; using metal::abs; using metal::sign;
using metal::normalize; using metal::length; using metal::dot;
}  // namespace fast
namespace precise {
using namespace fast;
}  // namespace precise

// ---- barriers, atomics ---------------------------------------------------------------------
enum class mem_flags { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
METAL_FUNC mem_flags operator|(mem_flags a, mem_flags b) { return mem_flags(int(a) | int(b)); }
enum memory_order { memory_order_relaxed, memory_order_acquire, memory_order_release,
                    memory_order_acq_rel, memory_order_seq_cst };
template <class T> struct atomic { T v; };
#define ZSIM_ATOMIC_OPS(AS)                                                                     \
  template <class T> METAL_FUNC T* zsim_ptr(volatile AS atomic<T>* o) { return (T*)&o->v; }    \
  template <class T> METAL_FUNC void atomic_store_explicit(volatile AS atomic<T>* o,            \
      typename zsim::id<T>::type v, memory_order) { *zsim_ptr(o) = v; }                         \
  template <class T> METAL_FUNC T atomic_load_explicit(volatile AS atomic<T>* o, memory_order) { \
    return *zsim_ptr(o); }                                                                      \
  template <class T> METAL_FUNC T atomic_exchange_explicit(volatile AS atomic<T>* o,            \
      typename zsim::id<T>::type v, memory_order) { T old = *zsim_ptr(o); *zsim_ptr(o) = v; return old; } \
  template <class T> METAL_FUNC bool atomic_compare_exchange_weak_explicit(                      \
      volatile AS atomic<T>* o, thread T* expected, typename zsim::id<T>::type desired,          \
      memory_order, memory_order) {                                                             \
    T* p = zsim_ptr(o);                                                                         \
    if (*p == *expected) { *p = desired; return true; }                                         \
    *expected = *p;                                                                             \
    return false;                                                                               \
  }                                                                                             \
  ZSIM_ATOMIC_RMW(AS, add, old + v) ZSIM_ATOMIC_RMW(AS, sub, old - v)                           \
  ZSIM_ATOMIC_RMW(AS, and, old & v) ZSIM_ATOMIC_RMW(AS, or, old | v)                            \
  ZSIM_ATOMIC_RMW(AS, xor, old ^ v) ZSIM_ATOMIC_RMW(AS, max, old < v ? v : old)                 \
  ZSIM_ATOMIC_RMW(AS, min, v < old ? v : old)
#define ZSIM_ATOMIC_RMW(AS, op, expr)                                                           \
  template <class T> METAL_FUNC T atomic_fetch_##op##_explicit(volatile AS atomic<T>* o,         \
      typename zsim::id<T>::type v, memory_order) {                                             \
    T* p = zsim_ptr(o);                                                                         \
    T old = *p;                                                                                 \
    *p = expr;                                                                                  \
    return old;                                                                                 \
  }
ZSIM_ATOMIC_OPS(device)
ZSIM_ATOMIC_OPS(threadgroup)
}  // namespace metal
using namespace metal;
typedef atomic<int> atomic_int;
typedef atomic<uint> atomic_uint;
typedef atomic<bool> atomic_bool;
typedef atomic<float> atomic_float;

// ---- barriers and simdgroup / quadgroup collectives (blocking: see runtime.c) ---------------
#define threadgroup_barrier(...) zsim_barrier(__LINE__)
#define simdgroup_barrier(...) zsim_collective(__LINE__, 0, 0, 0)
namespace metal {
enum { ZSIM_SIMD = 1, ZSIM_QUAD = 2, ZSIM_VOTE = 3 };
// Metal's simdgroup/quadgroup collectives take scalars and vectors of 32-bit or smaller elements.
template <class T> struct zsim_simd_type { enum { ok = sizeof(typename zsim::vinfo<T>::elem) <= 4 }; };
template <class T> METAL_FUNC const zsim_coll* zsim_arrive(int line, int kind, T x) {
  static_assert(zsim_simd_type<T>::ok,
                "simd collectives take 32-bit or smaller types on Metal (long/ulong: split into uint2 with as_type)");
  static_assert(sizeof(T) <= 64, "simd value too large");
  return zsim_collective(line, kind, &x, sizeof(T));
}
// Reduce over the participating lanes of the simdgroup (quad: of the lane's quad), in lane order.
template <class T, class F> METAL_FUNC T zsim_reduce(int line, int kind, T x, F f) {
  const zsim_coll* c = zsim_arrive(line, kind, x);
  bool quad = (kind & 15) == ZSIM_QUAD;
  uint lo = quad ? (c->lane & ~3u) : 0, hi = quad ? lo + 4 : 32;
  bool first = true;
  T r = x;
  for (uint j = lo; j < hi; ++j) {
    if (!(c->mask >> j & 1)) continue;
    T v = zsim::load<T>(c->vals[j]);
    r = first ? v : f(r, v);
    first = false;
  }
  return r;
}
template <class T, class F> METAL_FUNC T zsim_scan(int line, int site, T x, T init, bool inclusive, F f) {
  const zsim_coll* c = zsim_arrive(line, site | ZSIM_SIMD, x);
  T r = init;
  for (uint j = 0; j < c->lane + (inclusive ? 1 : 0); ++j)
    if (c->mask >> j & 1) r = f(r, zsim::load<T>(c->vals[j]));
  return r;
}
template <class T> METAL_FUNC T zsim_lane(int line, int kind, T x, int src) {
  const zsim_coll* c = zsim_arrive(line, kind, x);
  return (src >= 0 && src < 32 && (c->mask >> src & 1)) ? zsim::load<T>(c->vals[src]) : zsim::load<T>(0);
}
struct zsim_add { template <class T> T operator()(T a, T b) const { return a + b; } };
struct zsim_mul { template <class T> T operator()(T a, T b) const { return a * b; } };
struct zsim_max { template <class T> T operator()(T a, T b) const { return max(a, b); } };
struct zsim_min { template <class T> T operator()(T a, T b) const { return min(a, b); } };
struct zsim_and { template <class T> T operator()(T a, T b) const { return a & b; } };
struct zsim_or { template <class T> T operator()(T a, T b) const { return a | b; } };
struct zsim_xor { template <class T> T operator()(T a, T b) const { return a ^ b; } };
template <class T> METAL_FUNC T zsim_simd_shuffle_down(int line, int site, T x, ushort d) {
  const zsim_coll* c = zsim_arrive(line, site | ZSIM_SIMD, x);
  uint s = c->lane + d;
  return s >= 32 ? x : (c->mask >> s & 1) ? zsim::load<T>(c->vals[s]) : zsim::load<T>(0);
}
template <class T> METAL_FUNC T zsim_simd_shuffle_up(int line, int site, T x, ushort d) {
  const zsim_coll* c = zsim_arrive(line, site | ZSIM_SIMD, x);
  return c->lane < d ? x : (c->mask >> (c->lane - d) & 1) ? zsim::load<T>(c->vals[c->lane - d]) : zsim::load<T>(0);
}
template <class T> METAL_FUNC T zsim_simd_shuffle_xor(int line, int site, T x, ushort m) {
  const zsim_coll* c = zsim_arrive(line, site | ZSIM_SIMD, x);
  uint s = (c->lane ^ m) & 31;
  return (c->mask >> s & 1) ? zsim::load<T>(c->vals[s]) : zsim::load<T>(0);
}
template <class T> METAL_FUNC T zsim_quad_shuffle_xor(int line, int site, T x, ushort m) {
  const zsim_coll* c = zsim_arrive(line, site | ZSIM_QUAD, x);
  uint s = (c->lane & ~3u) | ((c->lane ^ m) & 3u);
  return (c->mask >> s & 1) ? zsim::load<T>(c->vals[s]) : zsim::load<T>(0);
}
template <class T> METAL_FUNC T zsim_quad_shuffle_down(int line, int site, T x, ushort d) {
  const zsim_coll* c = zsim_arrive(line, site | ZSIM_QUAD, x);
  uint q = c->lane & 3u, s = (c->lane & ~3u) + q + d;
  return q + d >= 4 ? x : (c->mask >> s & 1) ? zsim::load<T>(c->vals[s]) : zsim::load<T>(0);
}
template <class T> METAL_FUNC T zsim_simd_broadcast_first(int line, int site, T x) {
  const zsim_coll* c = zsim_arrive(line, site | ZSIM_SIMD, x);
  return zsim::load<T>(c->vals[__builtin_ctz(c->mask)]);
}
METAL_FUNC bool zsim_simd_is_first(int line) {
  const zsim_coll* c = zsim_arrive(line, ZSIM_VOTE, 0);
  return (uint)__builtin_ctz(c->mask) == c->lane;
}
METAL_FUNC bool zsim_simd_all(int line, int site, bool b) { return zsim_reduce(line, site | ZSIM_VOTE, (int)b, zsim_and()); }
METAL_FUNC bool zsim_simd_any(int line, int site, bool b) { return zsim_reduce(line, site | ZSIM_VOTE, (int)b, zsim_or()); }
METAL_FUNC bool zsim_quad_all(int line, int site, bool b) { return zsim_reduce(line, site | ZSIM_QUAD, (int)b, zsim_and()); }
METAL_FUNC bool zsim_quad_any(int line, int site, bool b) { return zsim_reduce(line, site | ZSIM_QUAD, (int)b, zsim_or()); }
}  // namespace metal
#define ZSIM_SITE(k) ((k) | (__COUNTER__ << 4))
#define simd_sum(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), zsim_add())
#define simd_product(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), zsim_mul())
#define simd_max(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), zsim_max())
#define simd_min(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), zsim_min())
#define simd_and(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), zsim_and())
#define simd_or(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), zsim_or())
#define simd_xor(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), zsim_xor())
#define simd_prefix_inclusive_sum(x) zsim_scan(__LINE__, ZSIM_SITE(0), (x), decltype(x)(0), true, zsim_add())
#define simd_prefix_exclusive_sum(x) zsim_scan(__LINE__, ZSIM_SITE(0), (x), decltype(x)(0), false, zsim_add())
#define simd_prefix_inclusive_product(x) zsim_scan(__LINE__, ZSIM_SITE(0), (x), decltype(x)(1), true, zsim_mul())
#define simd_prefix_exclusive_product(x) zsim_scan(__LINE__, ZSIM_SITE(0), (x), decltype(x)(1), false, zsim_mul())
#define simd_shuffle(x, l) zsim_lane(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), (int)(l))
#define simd_broadcast(x, l) zsim_lane(__LINE__, ZSIM_SITE(ZSIM_SIMD), (x), (int)(l))
#define simd_broadcast_first(x) zsim_simd_broadcast_first(__LINE__, ZSIM_SITE(0), (x))
#define simd_shuffle_down(x, d) zsim_simd_shuffle_down(__LINE__, ZSIM_SITE(0), (x), (d))
#define simd_shuffle_up(x, d) zsim_simd_shuffle_up(__LINE__, ZSIM_SITE(0), (x), (d))
#define simd_shuffle_xor(x, m) zsim_simd_shuffle_xor(__LINE__, ZSIM_SITE(0), (x), (m))
#define simd_is_first() zsim_simd_is_first(__LINE__)
#define simd_all(b) zsim_simd_all(__LINE__, ZSIM_SITE(0), (b))
#define simd_any(b) zsim_simd_any(__LINE__, ZSIM_SITE(0), (b))
#define quad_sum(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_QUAD), (x), zsim_add())
#define quad_product(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_QUAD), (x), zsim_mul())
#define quad_max(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_QUAD), (x), zsim_max())
#define quad_min(x) zsim_reduce(__LINE__, ZSIM_SITE(ZSIM_QUAD), (x), zsim_min())
#define quad_shuffle(x, l) zsim_quad_lane(__LINE__, ZSIM_SITE(0), (x), (l))
#define quad_broadcast(x, l) zsim_quad_lane(__LINE__, ZSIM_SITE(0), (x), (l))
#define quad_shuffle_xor(x, m) zsim_quad_shuffle_xor(__LINE__, ZSIM_SITE(0), (x), (m))
#define quad_shuffle_down(x, d) zsim_quad_shuffle_down(__LINE__, ZSIM_SITE(0), (x), (d))
#define quad_all(b) zsim_quad_all(__LINE__, ZSIM_SITE(0), (b))
#define quad_any(b) zsim_quad_any(__LINE__, ZSIM_SITE(0), (b))
namespace metal {
template <class T> METAL_FUNC T zsim_quad_lane(int line, int site, T x, ushort q) {
  const zsim_coll* c = zsim_arrive(line, site | ZSIM_QUAD, x);
  uint s = (c->lane & ~3u) + (q & 3u);
  return (c->mask >> s & 1) ? zsim::load<T>(c->vals[s]) : zsim::load<T>(0);
}
}  // namespace metal

// ---- MLX's kernel preamble (mlx/backend/metal/kernels/utils.h), the parts kernels call ------
template <typename U> struct Limits {
  static constexpr U max = metal::numeric_limits<U>::max();
  static constexpr U min = metal::numeric_limits<U>::min();
  static constexpr U finite_max = metal::numeric_limits<U>::max();
  static constexpr U finite_min = metal::numeric_limits<U>::min();
};
#define ZSIM_FLOAT_LIMITS(T)                                             \
  template <> struct Limits<T> {                                         \
    static constexpr T max = metal::numeric_limits<T>::infinity();       \
    static constexpr T min = -metal::numeric_limits<T>::infinity();      \
    static constexpr T finite_max = metal::numeric_limits<T>::max();     \
    static constexpr T finite_min = -metal::numeric_limits<T>::max();    \
  };
ZSIM_FLOAT_LIMITS(float)
ZSIM_FLOAT_LIMITS(half)
ZSIM_FLOAT_LIMITS(bfloat)
template <typename U> struct WorkPerThread { static constexpr int n = 8 / sizeof(U); };
#define MLX_MTL_PRAGMA_UNROLL _Pragma("clang loop unroll(full)")
template <typename IdxT = int64_t>
METAL_FUNC IdxT elem_to_loc(IdxT elem, constant const int* shape, constant const int64_t* strides, int ndim) {
  IdxT loc = 0;
  for (int i = ndim - 1; i >= 0 && elem > 0; --i) {
    loc += (elem % shape[i]) * IdxT(strides[i]);
    elem /= shape[i];
  }
  return loc;
}
template <typename IdxT = int64_t>
METAL_FUNC IdxT elem_to_loc(uint3 elem, constant const int* shape, constant const int64_t* strides, int ndim) {
  IdxT loc = elem.x * IdxT(strides[ndim - 1]) + elem.y * IdxT(strides[ndim - 2]);
  for (int d = ndim - 3; d >= 0; --d) {
    loc += (elem.z % shape[d]) * IdxT(strides[d]);
    elem.z /= shape[d];
  }
  return loc;
}
template <typename IdxT = int64_t>
METAL_FUNC IdxT elem_to_loc_1(uint elem, constant const int64_t& stride) { return elem * IdxT(stride); }
template <typename IdxT = int64_t>
METAL_FUNC IdxT elem_to_loc_2(uint2 elem, constant const int64_t* strides) {
  return elem.x * IdxT(strides[1]) + elem.y * IdxT(strides[0]);
}
template <typename IdxT = int64_t>
METAL_FUNC IdxT elem_to_loc_3(uint3 elem, constant const int64_t* strides) {
  return elem.x * IdxT(strides[2]) + elem.y * IdxT(strides[1]) + elem.z * IdxT(strides[0]);
}
template <typename T, typename U> inline T ceildiv(T N, U M) { return (N + M - 1) / M; }
inline float log1p(float x) {
  float xp1 = 1.0f + x;
  if (xp1 == Limits<float>::max) return Limits<float>::max;
  if (xp1 == 1.0f) return x;
  return x * (metal::log(xp1) / (xp1 - 1.0f));
}
template <bool condition, typename T, typename U> struct ConditionalType { using type = U; };
template <typename T, typename U> struct ConditionalType<true, T, U> { using type = T; };
template <typename U, typename T> inline U cast_to(T val) { return static_cast<U>(val); }
inline uint16_t bfloat16_to_uint16(const bfloat16_t x) { return as_type<uint16_t>(x); }
inline bfloat16_t uint16_to_bfloat16(const uint16_t x) { return as_type<bfloat16_t>(x); }
#define ZSIM_U3(v) zsim::make<::uint3>((v).x, (v).y, (v).z)
