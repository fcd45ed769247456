/* What a 16-lane gather, a 16-lane scatter and a two-source shuffle cost on this CPU, from L1:
 * the numbers behind the short-row kernel's transpose (kernels/softmax_xent.cl, short_columns;
 * docs/PERFORMANCE.md, tenth round). Not part of the build (it needs AVX-512 where it runs):
 *   gcc -O2 -mavx512f bench/x86_gather_scatter.c -o /tmp/gs && /tmp/gs
 * The gathers and scatters are independent of each other (throughput); the shuffles form a
 * chain through x[] (closer to latency), so the shuffle figure is an upper bound. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float buf[4096] __attribute__((aligned(64)));

int main(void) {
  /* a column of a block of 16 rows of 10 classes: lanes 10 floats apart, as at c = 10 */
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(10));
  const long rounds = 20000000;
  __m512 acc = _mm512_setzero_ps();
  double t = now();
  for (long i = 0; i < rounds; ++i) acc = _mm512_add_ps(acc, _mm512_i32gather_ps(idx, buf + (i & 7) * 20, 4));
  const double gather = (now() - t) / (double)rounds;
  t = now();
  for (long i = 0; i < rounds; ++i) _mm512_i32scatter_ps(buf + (i & 7) * 20, idx, acc, 4);
  const double scatter = (now() - t) / (double)rounds;
  __m512 x[16];
  for (int r = 0; r < 16; ++r) x[r] = _mm512_loadu_ps(buf + r * 10);
  t = now();
  for (long i = 0; i < rounds; ++i) x[i & 15] = _mm512_permutex2var_ps(x[i & 15], idx, x[(i + 1) & 15]);
  const double shuffle = (now() - t) / (double)rounds;
  printf("gather %.2f ns, scatter %.2f ns, two-source shuffle %.2f ns (checksum %g)\n", gather * 1e9, scatter * 1e9,
         shuffle * 1e9, (double)(_mm512_reduce_add_ps(acc) + _mm512_reduce_add_ps(x[3])));
  return 0;
}
