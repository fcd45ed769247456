/*
 * clxent_linear_xent's speed (issue 17): median time of the fused linear + cross-entropy call,
 * loss only (the forward: one matrix product) and with grad_hidden and grad_weight (four), its
 * GFLOP/s, and the device memory the call allocates beyond its inputs and outputs against the
 * n·v·4 bytes of logits an unfused head materialises.
 *
 *   clxent_bench_linear [--device D] [--shape NxDxV]... [--repeat R] [--warmup W] [--csv]
 *
 * Flops counted: 2·n·d·v per product of the logits (the forward computes them once; with
 * gradients the backward computes them again, but for the blocks kept from the forward pass: at
 * most 8ndv done, 6ndv where a row chunk keeps all its blocks), 2·n·d·v for grad_hidden = G·W and
 * 2·n·d·v for grad_weight = Gᵀ·H: 2ndv loss only, 8ndv counted with both gradients. The
 * exponentials and the bias's column sums are not counted.
 */
#define CLXENT_EXPERIMENTAL_API
#include <clxent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../host/clock.h"

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void fill(float *x, size_t k, unsigned *seed, float scale) {
  for (size_t e = 0; e < k; ++e) {
    *seed = *seed * 1664525u + 1013904223u;
    x[e] = scale * ((float)(*seed >> 8) / 16777216.0f * 2.0f - 1.0f);
  }
}

/* The floats of device scratch of one call, as host/linear.c allocates them (include/clxent.h):
 * the block of logits (rows of ldz floats), the state, the row losses, the row block of hidden
 * packed for the logits; with the gradients the products' packs and the blocks kept for the
 * backward (kept_blocks), with the rows per block the call takes (rows_per_block: fewer than the
 * table's when a row chunk then keeps every block, unless CLXENT_LINEAR_ROWS set them). */
static double scratch_floats(size_t n, size_t d, size_t v, size_t R0, size_t V, size_t vec, int grads, int table_rows) {
  const size_t chunks = (v + V - 1) / V, ldz = (V + 15) / 16 * 16 + 16, dp = (d + 2 * vec - 1) / (2 * vec) * (2 * vec);
  size_t R = R0, kept = 0;
  for (size_t r = R0; r >= 1; r = (r - 1) / 16 * 16) {
    const size_t rp = (r + 2 * vec - 1) / (2 * vec) * (2 * vec);
    const size_t rest = r * ldz + r * 8 + n + rp * d + (grads ? V * dp + r * dp : 0);
    const double room = grads ? (0.045 * (double)n * (double)v - (double)rest) / (double)(r * ldz) - 1.0 : -1.0;
    const size_t k = room < 0.0 ? 0 : room >= (double)chunks ? chunks : (size_t)room;
    if (r == R0) kept = k;
    if (!grads || !table_rows || r < 64) break;
    if (k == chunks) {
      R = r, kept = k;
      break;
    }
  }
  const size_t rp = (R + 2 * vec - 1) / (2 * vec) * (2 * vec), slots = kept < chunks ? kept + 1 : chunks;
  return (double)(slots * R * ldz + R * 8 + n + rp * d + (grads ? V * dp + R * dp : 0));
}

static int parse_shape(const char *s, size_t *n, size_t *d, size_t *v) {
  char *end;
  *n = strtoull(s, &end, 10);
  if (*end != 'x') return 0;
  *d = strtoull(end + 1, &end, 10);
  if (*end != 'x') return 0;
  *v = strtoull(end + 1, &end, 10);
  return *end == '\0' && *n && *d && *v && *v <= 2147483647u;
}

int main(int argc, char **argv) {
  const char *device = NULL;
  size_t shapes[16][3], count = 0;
  int repeat = 3, warmup = 1, csv = 0;
  for (int a = 1; a < argc; ++a) {
    if (!strcmp(argv[a], "--device") && a + 1 < argc) device = argv[++a];
    else if (!strcmp(argv[a], "--shape") && a + 1 < argc && count < 16) {
      if (!parse_shape(argv[++a], &shapes[count][0], &shapes[count][1], &shapes[count][2])) {
        fprintf(stderr, "clxent_bench_linear: --shape %s is not NxDxV\n", argv[a]);
        return 2;
      }
      ++count;
    } else if (!strcmp(argv[a], "--repeat") && a + 1 < argc) repeat = atoi(argv[++a]);
    else if (!strcmp(argv[a], "--warmup") && a + 1 < argc) warmup = atoi(argv[++a]);
    else if (!strcmp(argv[a], "--csv")) csv = 1;
    else {
      fprintf(stderr, "usage: clxent_bench_linear [--device D] [--shape NxDxV]... [--repeat R] [--warmup W] [--csv]\n");
      return 2;
    }
  }
  if (repeat < 1 || repeat > 256 || warmup < 0 || warmup > 100) {
    fprintf(stderr, "clxent_bench_linear: --repeat 1..256, --warmup 0..100\n");
    return 2;
  }
  if (!count) {
    static const size_t quick[][3] = {{512, 512, 4096}, {2048, 1024, 8000}};
    memcpy(shapes, quick, sizeof quick);
    count = 2;
  }
  clxent_ctx *ctx;
  if (clxent_create(&ctx, device) != CLXENT_OK) {
    fprintf(stderr, "clxent_bench_linear: %s\n", clxent_last_error(NULL));
    return 3;
  }
  clxent_info info = CLXENT_INFO_INIT;
  clxent_get_info(ctx, 0, &info);
  if (csv) printf("n,d,v,mode,median_s,min_s,gflops,extra_bytes,logits_bytes\n");
  else
    printf("device: %s; block %zu rows x %zu classes; median of %d after %d warm-up\n\n"
           "| n × d × v | outputs | median s | min s | GFLOP/s | extra device memory | of n·v·4 |\n"
           "|---|---|---|---|---|---|---|\n",
           clxent_device_name(ctx), info.linear_rows, info.linear_classes, repeat, warmup);
  int status = 0;
  for (size_t s = 0; s < count && !status; ++s) {
    const size_t n = shapes[s][0], d = shapes[s][1], v = shapes[s][2];
    float *h = malloc(n * d * sizeof(float)), *w = malloc(v * d * sizeof(float)), *b = malloc(v * sizeof(float));
    float *gh = malloc(n * d * sizeof(float)), *gw = malloc(v * d * sizeof(float)), *gb = malloc(v * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    if (!h || !w || !b || !gh || !gw || !gb || !y) {
      fprintf(stderr, "clxent_bench_linear: out of host memory for %zux%zux%zu\n", n, d, v);
      return 3;
    }
    unsigned seed = 1;
    fill(h, n * d, &seed, 1.0f), fill(w, v * d, &seed, 0.05f), fill(b, v, &seed, 0.1f);
    for (size_t i = 0; i < n; ++i) y[i] = (int32_t)((i * 2654435761u) % v);
    const size_t R = info.linear_rows < n ? info.linear_rows : n, V = info.linear_classes < v ? info.linear_classes : v;
    const double logits = (double)n * (double)v * 4.0;
    const char *rows_env = getenv("CLXENT_LINEAR_ROWS");
    for (int mode = 0; mode < 2 && !status; ++mode) {
      const double extra =
          scratch_floats(n, d, v, R, V, info.vector_width, mode, !rows_env || !*rows_env) * 4.0;
      double *t = malloc((size_t)repeat * sizeof(double));
      float loss;
      for (int r = -warmup; r < repeat; ++r) {
        const double t0 = clxent_seconds();
        const clxent_status st = clxent_linear_xent(ctx, n, d, v, h, w, b, y, NULL, &loss, mode ? gh : NULL,
                                                    mode ? gw : NULL, mode ? gb : NULL);
        const double t1 = clxent_seconds();
        if (st != CLXENT_OK) {
          fprintf(stderr, "clxent_bench_linear: %s: %s\n", clxent_status_str(st), clxent_last_error(ctx));
          status = 3;
          break;
        }
        if (r >= 0) t[r] = t1 - t0;
      }
      if (!status) {
        qsort(t, (size_t)repeat, sizeof(double), cmp_double);
        const double med = t[repeat / 2], flops = (mode ? 8.0 : 2.0) * (double)n * (double)d * (double)v;
        if (csv)
          printf("%zu,%zu,%zu,%s,%.4f,%.4f,%.1f,%.0f,%.0f\n", n, d, v, mode ? "loss+grads" : "loss", med, t[0],
                 flops / med / 1e9, extra, logits);
        else
          printf("| %zu × %zu × %zu | %s | %.3f | %.3f | %.1f | %.2f MiB | %.2f%% |\n", n, d, v,
                 mode ? "loss, grad_hidden, grad_weight, grad_bias" : "loss", med, t[0], flops / med / 1e9,
                 extra / 1048576.0, 100.0 * extra / logits);
        fflush(stdout);
      }
      free(t);
    }
    free(h), free(w), free(b), free(gh), free(gw), free(gb), free(y);
  }
  clxent_destroy(ctx);
  return status;
}
