/*
 * clxent_bench_cpu_limits: what a two-pass softmax cross-entropy can reach on this CPU, in plain C
 * (built -O3 -march=native), against the copies it is measured by. Rows of n x c float32, two
 * threads (each half of the rows), the gradient written over the logits, every variant timed once
 * per round in the same rounds (medians printed), the logits restored between rounds:
 *
 *   memcpy       a two-thread copy of the bytes into another array (glibc: non-temporal stores)
 *   scale        z *= 1.0001 in place: a read and a write of every value, no arithmetic to speak of
 *   max          the row max alone: a read of every value
 *   exp          one pass: z = e^(z - 3) in place: the exponential's cost at memory speed
 *   three-pass   max, e^(z - m) cached over z with its sum, then z *= 1/s (what clxent did)
 *   pipelined    chunks of 2048: the next chunk's max read in the loop of this chunk's
 *                exponentials, then the scale pass (what clxent's row kernel does now)
 *   exp+pf, pipelined+pf   the same with a software prefetch ahead of the reads (64 KiB ahead;
 *                4 KiB past the next chunk's read, as the kernels' CLXENT_PREFETCH_AHEAD)
 *
 * The exponential is kernels/math.cl's narrow one (the same polynomial and reduction), eight lanes
 * in GCC vector extensions. What this shows: the exponential alone, one pass, takes about the time
 * of the in-place copy; a softmax needs a second pass over the row (the sum must be known before
 * any gradient value), so on this machine the row kernel cannot reach the copy's speed whatever
 * its memory traffic. docs/PERFORMANCE.md quotes a run.
 *
 *   clxent_bench_cpu_limits [N C [ROUNDS]]     (default 4096 32000 15)
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../host/clock.h" /* clxent_seconds, clxent_median (compiled in from host/clock.c) */

typedef float v8 __attribute__((vector_size(32)));
typedef int i8 __attribute__((vector_size(32)));

/* kernels/math.cl's narrow e^x (|x| <= 87): Cody-Waite reduction, degree-6 polynomial, 2^k from bits */
static inline v8 vexp(v8 x) {
  const v8 t = x * 1.44269504088896341f + 12582912.0f, kf = t - 12582912.0f;
  v8 r = x - kf * 0.693145751953125f;
  r = r - kf * 1.42860682030941723212e-6f;
  const v8 p = 1.0f + r * (1.0f + r * (0x1.fffffcp-2f + r * (0x1.555492p-3f + r * (0x1.5558f2p-5f +
                                                                                     r * (0x1.1239d4p-7f + r * 0x1.6a244cp-10f)))));
  const i8 scale = ((i8)t << 23) + 0x3f800000;
  return p * (v8)scale;
}
static inline v8 load(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void store(float *p, v8 v) { memcpy(p, &v, sizeof v); }
static inline v8 vmax(v8 a, v8 b) {
  const i8 gt = a > b;
  return (v8)(((i8)a & gt) | ((i8)b & ~gt));
}
static inline v8 splat(float x) { return (v8){x, x, x, x, x, x, x, x}; }
static inline float hsum(v8 v) {
  float s = 0;
  for (int i = 0; i < 8; ++i) s += v[i];
  return s;
}
static inline float hmax(v8 v) {
  float m = -INFINITY;
  for (int i = 0; i < 8; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

static size_t n, c; /* c a multiple of 8 */
static float *z, *other;
static volatile float sink;

static void row_scale(float *r) {
  for (size_t j = 0; j < c; j += 8) store(r + j, load(r + j) * 1.0001f);
}
static void row_max(float *r) {
  v8 m = splat(-INFINITY);
  for (size_t j = 0; j < c; j += 8) m = vmax(load(r + j), m);
  sink = hmax(m);
}
static void row_exp(float *r) {
  for (size_t j = 0; j < c; j += 8) store(r + j, vexp(load(r + j) - 3.0f));
}
static void row_exp_prefetch(float *r) { /* 64 KiB ahead: into the next row */
  for (size_t j = 0; j < c; j += 8) {
    __builtin_prefetch(r + j + 16384, 0, 2);
    store(r + j, vexp(load(r + j) - 3.0f));
  }
}
static void row_three_pass(float *r) {
  v8 mv = splat(-INFINITY), sv = splat(0);
  for (size_t j = 0; j < c; j += 8) mv = vmax(load(r + j), mv);
  const float m = hmax(mv);
  for (size_t j = 0; j < c; j += 8) {
    const v8 e = vexp(load(r + j) - m);
    store(r + j, e);
    sv += e;
  }
  const float k = 1.0f / hsum(sv);
  for (size_t j = 0; j < c; j += 8) store(r + j, load(r + j) * k);
}
#define CHUNK 2048
#define MAX_CHUNKS 1024
/* ahead: 0, or how many values past the next chunk's read to prefetch (the kernels' CLXENT_PREFETCH) */
static void pipelined(float *r, size_t ahead) {
  static _Thread_local float seg_m[MAX_CHUNKS];
  float m = -INFINITY, s = 0;
  v8 nm = splat(-INFINITY);
  for (size_t j = 0; j < (c < CHUNK ? c : CHUNK); j += 8) nm = vmax(load(r + j), nm);
  size_t t = 0;
  for (size_t j0 = 0; j0 < c; j0 += CHUNK, ++t) {
    const size_t len = (j0 + CHUNK < c ? j0 + CHUNK : c) - j0, n0 = j0 + len;
    const size_t next = (n0 + CHUNK < c ? n0 + CHUNK : c) - n0;
    const float mc = hmax(nm);
    if (mc > m) {
      if (s != 0) s *= expf(m - mc);
      m = mc;
    }
    seg_m[t] = m;
    v8 sv = splat(0);
    nm = splat(-INFINITY);
    for (size_t j = 0; j < len; j += 8) {
      const v8 e = vexp(load(r + j0 + j) - m);
      store(r + j0 + j, e);
      sv += e;
      if (j < next) {
        if (ahead) __builtin_prefetch(r + n0 + j + ahead, 0, 2);
        nm = vmax(load(r + n0 + j), nm);
      }
    }
    s += hsum(sv);
  }
  const float k = 1.0f / s;
  t = 0;
  for (size_t j0 = 0; j0 < c; j0 += CHUNK, ++t) {
    const float f = k * expf(seg_m[t] - m);
    const size_t j1 = j0 + CHUNK < c ? j0 + CHUNK : c;
    for (size_t j = j0; j < j1; j += 8) store(r + j, load(r + j) * f);
  }
}
static void row_pipelined(float *r) { pipelined(r, 0); }
static void row_pipelined_prefetch(float *r) { pipelined(r, 1024); }

enum { MEMCPY, SCALE, MAX, EXP, EXP_PREFETCH, THREE_PASS, PIPELINED, PIPELINED_PREFETCH, VARIANTS };
static const char *const names[VARIANTS] = {"memcpy",     "scale",     "max",       "exp",
                                            "exp+pf",     "three-pass", "pipelined", "pipelined+pf"};
static void (*const row_fn[VARIANTS])(float *) = {NULL,           row_scale,      row_max,       row_exp,
                                                  row_exp_prefetch, row_three_pass, row_pipelined, row_pipelined_prefetch};

typedef struct {
  int variant;
  size_t first, last;
} job;
static void *work(void *arg) {
  const job *w = arg;
  if (w->variant == MEMCPY) memcpy(other + w->first * c, z + w->first * c, (w->last - w->first) * c * sizeof(float));
  else
    for (size_t i = w->first; i < w->last; ++i) row_fn[w->variant](z + i * c);
  return NULL;
}
static double timed(int variant) {
  job w[2] = {{variant, 0, n / 2}, {variant, n / 2, n}};
  pthread_t t;
  const double t0 = clxent_seconds();
  const int threaded = pthread_create(&t, NULL, work, &w[1]) == 0;
  work(&w[0]);
  if (threaded) pthread_join(t, NULL);
  else work(&w[1]);
  return clxent_seconds() - t0;
}
static void fill(void) {
  for (size_t i = 0; i < n * c; ++i) z[i] = (float)((i * 2654435761u) % 1000) * 0.01f - 5.0f;
}
int main(int argc, char **argv) {
  n = argc > 2 ? strtoul(argv[1], NULL, 10) : 4096;
  c = argc > 2 ? strtoul(argv[2], NULL, 10) : 32000;
  const int rounds = argc > 3 ? atoi(argv[3]) : 15;
  if (n < 2 || c < 8 || c % 8 || c / CHUNK >= MAX_CHUNKS || rounds < 1 || rounds > 255) {
    fprintf(stderr, "usage: clxent_bench_cpu_limits [N C [ROUNDS]]: N >= 2, C a multiple of 8 below %d, ROUNDS 1..255\n",
            CHUNK * MAX_CHUNKS);
    return 2;
  }
  z = malloc(n * c * sizeof *z), other = malloc(n * c * sizeof *other);
  if (!z || !other) return fprintf(stderr, "out of memory\n"), 3;
  memset(other, 0, n * c * sizeof *other);
  fill();
  static double t[VARIANTS][256];
  for (int r = 0; r < rounds; ++r)
    for (int v = 0; v < VARIANTS; ++v) {
      t[v][r] = timed(v);
      if (v >= EXP) fill(); /* the variants that overwrite z with values of another range */
    }
  const double bytes = 2.0 * (double)(n * c * sizeof(float));
  printf("# %zu x %zu float32, two threads, median of %d rounds; GB/s over 2 * n * c * 4 bytes\n", n, c, rounds);
  double ref = 0;
  for (int v = 0; v < VARIANTS; ++v) {
    const double med = clxent_median(t[v], rounds);
    if (v == SCALE) ref = med;
    printf("%-12s %9.2f ms %7.1f GB/s", names[v], 1e3 * med, bytes / med / 1e9);
    if (v > SCALE) printf("   %5.0f%% of scale's speed", 100 * ref / med);
    printf("\n");
  }
  free(z), free(other);
  return 0;
}
