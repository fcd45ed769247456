/*
 * Two builds of the library side by side in one process (dlopen with RTLD_LOCAL), for before/after
 * figures that one noisy machine can still compare: their float32 hard-label call (the same
 * signature in every version so far) alternates call by call, the order swapped every round, on
 * the same arrays. Prints each build's median time and the per-round ratio after/before (median,
 * range), then each build's device shares (several devices).
 *
 *   clxent_bench_ab [--in-place] [--after-env NAME=VALUE] [--softcap S] [--bf16 | --bf16-after] [--bias] [--options LIST] [--plain-before]
 *                   [--sigmoid | --bce] BEFORE.so AFTER.so DEVICE ROUNDS NxC...
 *
 * --softcap S calls both with opts->softcap = S (the options struct is read by its size, so one
 * struct serves any two versions that know the field); --bf16 stores logits and gradient as
 * bfloat16 (clxent_softmax_xent_ex, API 1.1 and later); the copy then moves those bytes.
 * --bf16-after keeps the before build's call float32 and makes the after build's bfloat16, each on
 * arrays of its own (the same values, rounded): with one library as both builds, the ratio is
 * bfloat16's time over float32's, measured interleaved (issue 14's 16-bit goal); the copy moves
 * float32's bytes, so after_%copy is the bfloat16 call against float32's copy (after_GBps counts
 * bfloat16's bytes). --bias
 * asks both for the bias gradient (ex->bias_grad, API 1.1 and later). --options LIST takes
 * `clxent bench`'s list and values (weights, smoothing 0.1, zloss 1e-4, softcap 30, lse, bias, all).
 * --plain-before calls the before build without any option: with the same library as both
 * builds, the ratio is then the options' cost over the plain call, measured interleaved
 * (docs/PERFORMANCE.md's goals).
 * --after-env NAME=VALUE (repeatable) sets an environment variable after the before build's
 * context is made and before the after build's: one library against itself under two settings
 * (CLXENT_VEC=16, say), compared interleaved like two builds.
 * --sigmoid times clxent_sigmoid_xent_ex instead (n x c independent binary values, targets 0 or 1
 * in float32, API 1.1 and later): it moves the targets too, so the call's bytes are 1.5 times the
 * copied array's and after_%copy is scaled to match (the copy's speed over the call's). --bce
 * likewise times clxent_bce_ex on probabilities in [0, 1) (not in place: a gradient is no
 * probability, and the next call would reject it).
 * --in-place writes the gradient over the logits (what a training loop does; the values then
 * change from call to call, which the timing does not depend on). Each round also times a copy
 * of the same bytes by two threads (memcpy, each half the array: the machine's two cores), the
 * physical reference for a CPU device: after_%copy is the after build's time over the copy's,
 * the median of the per-round ratios.
 *
 * docs/PERFORMANCE.md has the commands that build the "before" library from an older commit.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../host/clock.h" /* clxent_seconds, clxent_median (compiled in from host/clock.c) */
#include "clxent.h"         /* clxent_opts_default: inline, nothing linked */

typedef int (*create_fn)(void **, const char *);
typedef int (*xent_fn)(void *, size_t, size_t, const float *, const int32_t *, const void *, float *, float *);
typedef int (*xent_ex_fn)(void *, size_t, size_t, const void *, const int32_t *, const void *, const void *, float *,
                          void *);
typedef int (*binary_ex_fn)(void *, size_t, size_t, const void *, const void *, const void *, const void *, float *,
                             void *);
typedef const char *(*error_fn)(const void *);
typedef double (*share_fn)(const void *, size_t);

typedef struct build {
  void *lib, *ctx;
  create_fn create;
  xent_fn xent;       /* every version */
  xent_ex_fn xent_ex; /* API 1.1 on: --bf16 */
  binary_ex_fn binary_ex; /* API 1.1 on: --sigmoid, --bce */
  error_fn error;
  share_fn share;
} build;

/* dlsym's object pointer into a function pointer, the way POSIX allows (ISO C has no cast for it). */
/* One call of a build: the float32 entry that every version has, or _ex for 16-bit storage;
 * with targets (--sigmoid) the binary loss instead. */
static int call(const build *b, size_t n, size_t c, const float *z, const int32_t *y, const float *targets,
                const clxent_opts *opts, const clxent_ex *ex, float *loss, float *g) {
  if (targets) return b->binary_ex(b->ctx, n, c, z, targets, opts, ex, loss, g);
  return ex->dtype == CLXENT_FLOAT32 && !ex->bias_grad && !ex->lse ? b->xent(b->ctx, n, c, z, y, opts, loss, g)
                                                                    : b->xent_ex(b->ctx, n, c, z, y, opts, ex, loss, g);
}

/* float32 to bfloat16, rounded to nearest even (the values here are finite) */
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static int symbol(void *lib, const char *name, void *fn, size_t size) {
  void *p = dlsym(lib, name);
  if (!p) return fprintf(stderr, "%s: %s\n", name, dlerror()), 0;
  memcpy(fn, &p, size);
  return 1;
}

typedef struct half_copy {
  float *dst;
  const float *src;
  size_t count;
} half_copy;
static void *copy_half(void *arg) {
  const half_copy *h = arg;
  memcpy(h->dst, h->src, h->count * sizeof(float));
  return NULL;
}
/* dst = src by two threads, each half: seconds */
static double two_thread_copy(float *dst, const float *src, size_t count) {
  half_copy h[2] = {{dst, src, count / 2}, {dst + count / 2, src + count / 2, count - count / 2}};
  pthread_t t;
  const double t0 = clxent_seconds();
  if (pthread_create(&t, NULL, copy_half, &h[1]) != 0) {
    copy_half(&h[1]);
    copy_half(&h[0]);
  } else {
    copy_half(&h[0]);
    pthread_join(t, NULL);
  }
  return clxent_seconds() - t0;
}

int main(int argc, char **argv) {
  int in_place = 0, bias = 0, plain_before = 0, weights = 0, lse = 0, sigmoid = 0, bf16_after = 0;
  clxent_opts opts = clxent_opts_default();
  clxent_ex ex = clxent_ex_default();
  const char *prog = argv[0];
  char *after_env[16];
  int n_after_env = 0;
  for (;;) {
    if (argc > 1 && strcmp(argv[1], "--in-place") == 0) {
      in_place = 1, argc -= 1, argv += 1;
    } else if (argc > 2 && strcmp(argv[1], "--after-env") == 0) {
      if (!strchr(argv[2], '=') || argv[2][0] == '=' || n_after_env == 16)
        return fprintf(stderr, "--after-env %s: NAME=VALUE, at most 16 of them\n", argv[2]), 2;
      after_env[n_after_env++] = argv[2], argc -= 2, argv += 2;
    } else if (argc > 1 && strcmp(argv[1], "--bias") == 0) {
      bias = 1, argc -= 1, argv += 1;
    } else if (argc > 2 && strcmp(argv[1], "--options") == 0) {
      static const char *const names[] = {"weights", "smoothing", "zloss", "softcap", "lse", "bias", "all"};
      for (const char *item = argv[2];; ++item) {
        const size_t len = strcspn(item, ",");
        int k = 0;
        while (k < 7 && !(strlen(names[k]) == len && !strncmp(item, names[k], len))) ++k;
        if (k == 7) return fprintf(stderr, "--options %s: a list of weights,smoothing,zloss,softcap,lse,bias,all\n", argv[2]), 2;
        if (k == 0 || k == 6) weights = 1;
        if (k == 1 || k == 6) opts.label_smoothing = 0.1f;
        if (k == 2 || k == 6) opts.z_loss = 1e-4f;
        if (k == 3 || k == 6) opts.softcap = 30.0f;
        if (k == 4 || k == 6) lse = 1;
        if (k == 5 || k == 6) bias = 1;
        item += len;
        if (!*item) break;
      }
      argc -= 2, argv += 2;
    } else if (argc > 1 && strcmp(argv[1], "--plain-before") == 0) {
      plain_before = 1, argc -= 1, argv += 1;
    } else if (argc > 1 && (strcmp(argv[1], "--sigmoid") == 0 || strcmp(argv[1], "--bce") == 0)) {
      sigmoid = argv[1][2] == 'b' ? 2 : 1, argc -= 1, argv += 1;
    } else if (argc > 1 && strcmp(argv[1], "--bf16") == 0) {
      ex.dtype = CLXENT_BFLOAT16, argc -= 1, argv += 1;
    } else if (argc > 1 && strcmp(argv[1], "--bf16-after") == 0) {
      bf16_after = 1, argc -= 1, argv += 1;
    } else if (argc > 2 && strcmp(argv[1], "--softcap") == 0) {
      char *end;
      opts.softcap = strtof(argv[2], &end);
      if (*end || !(opts.softcap > 0)) return fprintf(stderr, "--softcap %s: a positive number\n", argv[2]), 2;
      argc -= 2, argv += 2;
    } else {
      break;
    }
  }
  argv[0] = (char *)prog;
  if (argc < 6) {
    fprintf(stderr,
            "usage: %s [--in-place] [--after-env NAME=VALUE] [--softcap S] [--bf16 | --bf16-after] [--bias] [--options LIST] [--plain-before] [--sigmoid | --bce] "
            "BEFORE.so AFTER.so DEVICE ROUNDS NxC...\n",
            argv[0]);
    return 2;
  }
  if (sigmoid && (ex.dtype != CLXENT_FLOAT32 || bf16_after)) return fprintf(stderr, "--sigmoid, --bce: float32 only\n"), 2;
  if (bf16_after && (ex.dtype != CLXENT_FLOAT32 || plain_before))
    return fprintf(stderr, "--bf16-after: not with --bf16 or --plain-before\n"), 2;
  if (sigmoid == 2 && in_place) return fprintf(stderr, "--bce: not in place\n"), 2;
  build b[2];
  for (int l = 0; l < 2; ++l) {
    b[l].lib = dlopen(argv[1 + l], RTLD_NOW | RTLD_LOCAL);
    if (!b[l].lib) return fprintf(stderr, "%s\n", dlerror()), 1;
    if (!symbol(b[l].lib, "clxent_create", &b[l].create, sizeof b[l].create) ||
        !symbol(b[l].lib, "clxent_softmax_xent", &b[l].xent, sizeof b[l].xent) ||
        ((ex.dtype != CLXENT_FLOAT32 || bias || lse || bf16_after) && !symbol(b[l].lib, "clxent_softmax_xent_ex", &b[l].xent_ex, sizeof b[l].xent_ex)) ||
        (sigmoid && !symbol(b[l].lib, sigmoid == 2 ? "clxent_bce_ex" : "clxent_sigmoid_xent_ex", &b[l].binary_ex,
                            sizeof b[l].binary_ex)) ||
        !symbol(b[l].lib, "clxent_last_error", &b[l].error, sizeof b[l].error) ||
        !symbol(b[l].lib, "clxent_device_share", &b[l].share, sizeof b[l].share))
      return 1;
    for (int k = 0; l == 1 && k < n_after_env; ++k) {
      char name[256];
      const size_t len = (size_t)(strchr(after_env[k], '=') - after_env[k]);
      if (len >= sizeof name) return fprintf(stderr, "--after-env %s: name too long\n", after_env[k]), 2;
      memcpy(name, after_env[k], len), name[len] = '\0';
      if (setenv(name, after_env[k] + len + 1, 1)) return perror("setenv"), 1;
    }
    if (b[l].create(&b[l].ctx, argv[3])) return fprintf(stderr, "create: %s\n", b[l].error(NULL)), 1;
  }
  const int rounds = atoi(argv[4]);
  if (rounds < 1 || rounds > 256) return fprintf(stderr, "ROUNDS: 1 to 256\n"), 2;
  if (sigmoid)
    printf("# %s: n x c binary values, targets 0/1 in float32\n", sigmoid == 2 ? "clxent_bce_ex" : "clxent_sigmoid_xent_ex");
  printf("# gradient %s; softcap %g; smoothing %g; z-loss %g; class weights %s; lse %s; bias gradient %s; %s%s\n",
         in_place ? "in place (over the logits)" : "in a separate array", (double)opts.softcap,
         (double)opts.label_smoothing, (double)opts.z_loss, weights ? "yes" : "no", lse ? "yes" : "no", bias ? "yes" : "no",
         bf16_after ? "before float32, after bfloat16" : ex.dtype == CLXENT_BFLOAT16 ? "bfloat16" : "float32", plain_before ? "; before: the plain call (no option)" : "");
  const clxent_opts plain_opts = clxent_opts_default();
  printf("shape,before_ms,after_ms,ratio_median,ratio_min,ratio_max,after_GBps,copy_ms,copy_GBps,after_pct_copy\n");
  for (int s = 5; s < argc; ++s) {
    size_t n, c;
    if (sscanf(argv[s], "%zux%zu", &n, &c) != 2 || !n || !c) return fprintf(stderr, "bad shape %s\n", argv[s]), 2;
    float *z = malloc(n * c * sizeof *z), *g0 = malloc(n * c * sizeof *g0), *b_grad = malloc(c * sizeof *b_grad), loss;
    float *w = malloc(c * sizeof *w), *row_lse = malloc(n * sizeof *row_lse);
    float *g = in_place ? z : g0;
    int32_t *y = malloc(n * sizeof *y);
    float *targets = sigmoid ? malloc(n * c * sizeof *targets) : NULL;
    if (!z || !g0 || !y || !b_grad || !w || !row_lse || (sigmoid && !targets)) return fprintf(stderr, "out of memory\n"), 1;
    for (size_t j = 0; j < c; ++j) w[j] = 0.5f + (float)(j * 40503u % 1000) * 1.5e-3f; /* in [0.5, 2) */
    clxent_ex ex_opt = ex, ex_plain = ex;
    ex_opt.bias_grad = bias ? b_grad : NULL, ex_opt.lse = lse ? row_lse : NULL;
    opts.class_weight = weights ? w : NULL;
    /* build l's options: the before build's are the plain call's with --plain-before */
    const clxent_opts *o_of[2] = {plain_before ? &plain_opts : &opts, &opts};
    clxent_ex ex_after = ex_opt;
    if (bf16_after) ex_after.dtype = CLXENT_BFLOAT16;
    const clxent_ex *x_of[2] = {plain_before ? &ex_plain : &ex_opt, &ex_after};
    for (size_t i = 0; i < n * c; ++i)
      z[i] = sigmoid == 2 ? (float)((i * 2654435761u) % 1000) * 1e-3f : (float)((i * 2654435761u) % 1000) * 0.01f - 5.0f;
    const size_t esize = ex.dtype == CLXENT_BFLOAT16 ? 2 : 4;
    if (esize == 2) { /* bfloat16 in place, front to back: element i's bytes lie below float i's */
      uint16_t *h = (uint16_t *)(void *)z;
      for (size_t i = 0; i < n * c; ++i) h[i] = to_bf16(z[i]);
    }
    /* --bf16-after: the after build's logits and gradient, bfloat16, rounded from z */
    uint16_t *z16 = bf16_after ? malloc(n * c * sizeof *z16) : NULL, *g16 = bf16_after ? malloc(n * c * sizeof *g16) : NULL;
    if (bf16_after && (!z16 || !g16)) return fprintf(stderr, "out of memory\n"), 1;
    for (size_t i = 0; z16 && i < n * c; ++i) z16[i] = to_bf16(z[i]);
    if (g16) memset(g16, 0, n * c * sizeof *g16);
    const float *z_of[2] = {z, z16 ? (const float *)(void *)z16 : z};
    float *g_of[2] = {g, !g16 ? g : in_place ? (float *)(void *)z16 : (float *)(void *)g16};
    for (size_t i = 0; i < n; ++i) y[i] = (int32_t)(i * 7919 % c);
    for (size_t i = 0; targets && i < n * c; ++i) targets[i] = (float)(i * 7919 % 3 == 0);
    double t[2][256], ratio[256], copy[256], of_copy[256];
    memset(g0, 0, n * c * sizeof *g0); /* the copy's destination, faulted in before the rounds */
    for (int warm = 0; warm < 2; ++warm)
      for (int l = 0; l < 2; ++l) call(&b[l], n, c, z_of[l], y, targets, o_of[l], x_of[l], &loss, g_of[l]);
    for (int r = 0; r < rounds; ++r) {
      for (int k = 0; k < 2; ++k) {
        const int l = (r + k) % 2; /* who goes first alternates */
        const double t0 = clxent_seconds();
        if (call(&b[l], n, c, z_of[l], y, targets, o_of[l], x_of[l], &loss, g_of[l])) return fprintf(stderr, "%s\n", b[l].error(b[l].ctx)), 1;
        t[l][r] = clxent_seconds() - t0;
      }
      ratio[r] = t[1][r] / t[0][r];
      copy[r] = two_thread_copy(g0, z, n * c * esize / 4); /* g0: the gradient, or (in place) a spare array */
      of_copy[r] = copy[r] * (targets ? 1.5 : 1.0) / t[1][r]; /* the call's bytes over the copy's */
    }
    double lo = ratio[0], hi = ratio[0];
    for (int r = 1; r < rounds; ++r) lo = ratio[r] < lo ? ratio[r] : lo, hi = ratio[r] > hi ? ratio[r] : hi;
    const double after = clxent_median(t[1], rounds), copied = clxent_median(copy, rounds), bytes = (targets ? 3.0 : 2.0) * (double)(n * c * (bf16_after ? 2 : esize));
    printf("%zux%zu,%.3f,%.3f,%.3f,%.3f,%.3f,%.1f,%.3f,%.1f,%.1f\n", n, c, 1e3 * clxent_median(t[0], rounds), 1e3 * after,
           clxent_median(ratio, rounds), lo, hi, bytes / after / 1e9, 1e3 * copied, bytes / copied / 1e9,
           100 * clxent_median(of_copy, rounds));
    free(z16), free(g16), free(z), free(g0), free(y), free(b_grad), free(w), free(row_lse), free(targets);
  }
  for (int l = 0; l < 2; ++l) {
    printf("# %s shares:", l ? "after" : "before");
    for (size_t k = 0; k < 64 && b[l].share(b[l].ctx, k) > 0; ++k) printf(" %.3f", b[l].share(b[l].ctx, k));
    printf("\n");
  }
  return 0;
}
