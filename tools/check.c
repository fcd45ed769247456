/*
 * clxent check: a quick self-test of a device (a new GPU, a new driver). Every loss, in each
 * storage type, with the toolbox's options, on shapes that are no multiple of any vector or
 * work-group size, is compared with a float64 reference computed here. Exit status: 0 all
 * correct, 1 a result is wrong, 2 bad usage, 3 the device or the library failed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clxent.h"
#include "util.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double uniform(double lo, double hi) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return lo + (hi - lo) * (double)(rng >> 11) / 9007199254740992.0;
}

/* Storage types, to round the inputs and read the gradient: written here again on purpose, so that
 * the check does not trust the library's own conversions. */
static float bits_to_float(uint16_t h, clxent_dtype t) {
  if (t == CLXENT_BFLOAT16) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
  }
  const int e = (h >> 10) & 31, m = h & 1023;
  const double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m | 1024, e - 25);
  return (float)((h & 0x8000) ? -v : v);
}
uint16_t clxent_tool_to_storage(float f, clxent_dtype t) { /* for normal numbers, as the tools' inputs */
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if (t == CLXENT_BFLOAT16) return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
  if (a < (113u << 23)) return (uint16_t)sign;
  return (uint16_t)(sign | ((a + 0xC8000FFFu + ((a >> 13) & 1u)) >> 13));
}

typedef struct check_case {
  const char *name;
  size_t n, c;
  clxent_dtype dtype;
  float smoothing, z_loss, softcap;
  int weights;
} check_case;

/* Hard-label softmax cross-entropy with every option (MEAN), loss and gradient. */
static int check_softmax(clxent_ctx *ctx, const check_case *k, int verbose) {
  const size_t n = k->n, c = k->c, nc = n * c, esz = k->dtype == CLXENT_FLOAT32 ? 4 : 2;
  float *z = malloc(nc * sizeof(float)), *w = malloc(c * sizeof(float)), *g = malloc(nc * sizeof(float));
  unsigned char *in = malloc(nc * esz), *grad = malloc(nc * esz);
  int32_t *y = malloc(n * sizeof(int32_t));
  double *ref = malloc(nc * sizeof(double));
  int bad = -1;
  if (!z || !w || !g || !in || !grad || !y || !ref) goto done;
  for (size_t e = 0; e < nc; ++e) {
    const float v = (float)uniform(-8, 8);
    if (k->dtype == CLXENT_FLOAT32) ((float *)in)[e] = z[e] = v;
    else ((uint16_t *)in)[e] = clxent_tool_to_storage(v, k->dtype), z[e] = bits_to_float(((uint16_t *)in)[e], k->dtype);
  }
  for (size_t j = 0; j < c; ++j) w[j] = (float)uniform(0.5, 2);
  for (size_t i = 0; i < n; ++i) y[i] = i % 5 == 4 ? -100 : (int32_t)(uniform(0, 1) * (double)c) % (int32_t)c;
  clxent_opts o = clxent_opts_default();
  o.label_smoothing = k->smoothing, o.z_loss = k->z_loss, o.softcap = k->softcap;
  if (k->weights) o.class_weight = w;
  clxent_ex ex = clxent_ex_default();
  ex.dtype = k->dtype;
  float loss;
  const clxent_status st = clxent_softmax_xent_ex(ctx, n, c, in, y, &o, &ex, &loss, grad);
  if (st != CLXENT_OK) {
    fprintf(stderr, "clxent check: %s: %s: %s\n", k->name, clxent_status_str(st), clxent_last_error(ctx));
    bad = -1;
    goto done;
  }
  /* the reference, straight from the header's formulas */
  double divisor = 0, ce = 0, zl = 0, gmax = 0;
  size_t counted = 0;
  for (size_t i = 0; i < n; ++i)
    if (y[i] != -100) ++counted, divisor += k->weights ? w[y[i]] : 1.0;
  for (size_t i = 0; i < n; ++i) {
    double m = -INFINITY, s = 0, u[64]; /* every case has c <= 64 */
    for (size_t j = 0; j < c; ++j) {
      u[j] = k->softcap > 0 ? k->softcap * tanh(z[i * c + j] / k->softcap) : z[i * c + j];
      m = fmax(m, u[j]);
    }
    for (size_t j = 0; j < c; ++j) s += exp(u[j] - m);
    const double lse = m + log(s);
    double T = 0, tau[64];
    for (size_t j = 0; j < c; ++j) {
      tau[j] = y[i] == -100 ? 0 : (k->weights ? w[j] : 1.0) * ((1 - k->smoothing) * ((int32_t)j == y[i]) + k->smoothing / (double)c);
      T += tau[j];
      ce += tau[j] * (lse - u[j]);
    }
    if (y[i] != -100) zl += k->z_loss * lse * lse;
    for (size_t j = 0; j < c; ++j) {
      const double a = exp(u[j] - lse), t = k->softcap > 0 ? tanh(z[i * c + j] / k->softcap) : 0;
      ref[i * c + j] = y[i] == -100 ? 0
                                    : (a * T / divisor - tau[j] / divisor + 2 * k->z_loss * lse * a / (double)counted) *
                                          (1 - t * t);
      gmax = fmax(gmax, fabs(a * T / divisor) + fabs(tau[j] / divisor));
    }
  }
  const double J = ce / divisor + zl / (double)counted;
  const double rtol = k->dtype == CLXENT_FLOAT32 ? 1e-4 : k->dtype == CLXENT_FLOAT16 ? 2e-3 : 8e-3;
  bad = fabs(loss - J) > 1e-4 * (1 + fabs(J));
  if (bad && verbose) fprintf(stderr, "clxent check: %s: loss %.7g, reference %.7g\n", k->name, loss, J);
  for (size_t e = 0; e < nc && !bad; ++e) {
    g[e] = k->dtype == CLXENT_FLOAT32 ? ((float *)grad)[e] : bits_to_float(((uint16_t *)grad)[e], k->dtype);
    if (!(fabs(g[e] - ref[e]) <= 1e-5 * gmax + rtol * fabs(ref[e]))) {
      bad = 1;
      if (verbose) fprintf(stderr, "clxent check: %s: grad[%zu] %.7g, reference %.7g\n", k->name, e, g[e], ref[e]);
    }
  }
done:
  if (bad < 0 && (!z || !w || !g || !in || !grad || !y || !ref)) fprintf(stderr, "clxent check: out of host memory\n");
  free(z), free(w), free(g), free(in), free(grad), free(y), free(ref);
  return bad;
}

static int check_usage(FILE *to) {
  fprintf(to, "usage: clxent check [--device D] [--quiet]\n"
              "  compares every storage type and option of the fused softmax cross-entropy on the device\n"
              "  with a float64 reference; exit 0 all correct, 1 wrong results, 2 bad usage, 3 failure\n");
  return to == stderr ? 2 : 0;
}

int clxent_check_main(int argc, char **argv) {
  const char *device = NULL;
  int verbose = 1;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--device")) {
      if (!(device = tool_option_value("clxent check", argc, argv, &i))) return 2;
    } else if (!strcmp(argv[i], "--quiet")) verbose = 0;
    else if (!strcmp(argv[i], "--help")) return check_usage(stdout);
    else {
      fprintf(stderr, "clxent check: unknown argument %s\n", argv[i]);
      return check_usage(stderr);
    }
  }
  clxent_ctx *ctx;
  const clxent_status st = clxent_create(&ctx, device);
  if (st != CLXENT_OK) {
    fprintf(stderr, "clxent check: %s: %s\n", clxent_status_str(st), clxent_last_error(NULL));
    return 3;
  }
  static const check_case cases[] = {
      {"f32 plain 37x61", 37, 61, CLXENT_FLOAT32, 0, 0, 0, 0},
      {"f32 weights+smoothing 29x3", 29, 3, CLXENT_FLOAT32, 0.1f, 0, 0, 1},
      {"f32 softcap+z-loss 11x64", 11, 64, CLXENT_FLOAT32, 0, 1e-3f, 5.0f, 0},
      {"f32 everything 13x1", 13, 1, CLXENT_FLOAT32, 0.2f, 1e-2f, 3.0f, 1},
      {"f16 plain 17x33", 17, 33, CLXENT_FLOAT16, 0, 0, 0, 0},
      {"f16 everything 9x50", 9, 50, CLXENT_FLOAT16, 0.1f, 1e-3f, 4.0f, 1},
      {"bf16 plain 21x7", 21, 7, CLXENT_BFLOAT16, 0, 0, 0, 0},
      {"bf16 everything 8x63", 8, 63, CLXENT_BFLOAT16, 0.1f, 1e-3f, 4.0f, 1},
  };
  const int count = (int)(sizeof cases / sizeof cases[0]);
  int failed = 0, broken = 0;
  if (verbose) printf("clxent %s check on %s\n", clxent_version_string(), clxent_device_name(ctx));
  for (int k = 0; k < count; ++k) {
    const int r = check_softmax(ctx, &cases[k], verbose);
    failed += r > 0, broken += r < 0;
    if (verbose) printf("  [%d/%d] %-32s %s\n", k + 1, count, cases[k].name, r == 0 ? "ok" : r > 0 ? "WRONG" : "FAILED");
  }
  clxent_destroy(ctx);
  if (verbose) printf("%d of %d correct\n", count - failed - broken, count);
  return broken ? 3 : failed ? 1 : 0;
}
