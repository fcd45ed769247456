/*
 * libFuzzer harness for the public API. The input chooses a function, sizes, labels, options
 * (as raw float bit patterns: NaN, inf, negative and huge values included), the storage type,
 * the extra outputs and the gradient mode, and the logits' bits. Every call must
 *   - return a documented status;
 *   - leave every output untouched when it rejects the call (INVALID_ARG, LABEL_RANGE);
 *   - when it accepts a float32 call whose inputs are finite (any of the four functions), agree
 *     with the float64 reference of the tests (tests/reference.c, all options) within tolerance:
 *     the loss, and the gradient wherever the loss is a number;
 *   - when it accepts a 16-bit call, give the float32 call's results on the decoded inputs,
 *     rounded once (check_16bit).
 * Build: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCLXENT_FUZZ=ON && cmake --build build-fuzz
 * Run:   ./build-fuzz/fuzz_api -max_total_time=60 fuzz/corpus
 * Every build also replays fuzz/corpus through this file without libFuzzer (fuzz/replay.c, the
 * CTest test fuzz_corpus_replay).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clxent.h"
#include "reference.h" /* tests/reference.c: the float64 reference the cmocka tests use */

enum { MAX_N = 48, MAX_C = 300, MAX_VALUES = MAX_N * MAX_C };

typedef struct reader {
  const uint8_t *p;
  size_t left;
} reader;

static uint32_t take(reader *r, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v = v << 8 | (r->left ? (--r->left, *r->p++) : 0);
  return v;
}
static float take_float(reader *r) {
  const uint32_t bits = take(r, 4);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
/* An option value: mostly sensible, sometimes any bit pattern. */
static float take_option(reader *r, float sensible) {
  const uint32_t mode = take(r, 1);
  if (mode < 128) return 0.0f;
  if (mode < 230) return sensible * (float)(mode - 127) / 100.0f;
  return take_float(r);
}

static clxent_ctx *ctx;
static const uint32_t poison_bits = 0x7FC0DEADu;

static void poison(void *p, size_t bytes) {
  for (size_t k = 0; k + 4 <= bytes; k += 4) memcpy((char *)p + k, &poison_bits, 4);
}
static int poisoned(const void *p, size_t bytes) {
  for (size_t k = 0; k + 4 <= bytes; k += 4)
    if (memcmp((const char *)p + k, &poison_bits, 4)) return 0;
  return 1;
}

static void destroy_ctx(void) { clxent_destroy(ctx); }

/* A failed check: the input, in hex, then abort. Under ASan's abort_on_error libFuzzer writes no
 * crash file, so CI's log is where the input survives: `xxd -r -p` turns the line back into a file
 * for fuzz/corpus (the replay then runs it in every build). */
static const uint8_t *input;
static size_t input_size;
static void fail(void) {
  fprintf(stderr, "fuzz: the input (%zu bytes, hex): ", input_size);
  for (size_t k = 0; k < input_size; ++k) fprintf(stderr, "%02x", input[k]);
  fprintf(stderr, "\n");
  abort();
}

/* The same bits, stored in float32 or in 16 bits (README: float32 math, results rounded once): an
 * accepted 16-bit call against the float32 call on the decoded logits and targets, with the same
 * options, labels and outputs asked for. Its loss and lse are those floats exactly and its gradient
 * the float32 one rounded to nearest even (NaN where it is NaN), for any input: NaN, inf, -inf
 * masks and subnormal values included. (The bias gradient is left out: it adds the stored 16-bit
 * values, as documented, so it differs from float32's by design.) */
static float aux[MAX_VALUES]; /* targets / probabilities, 16-bit in a 16-bit call */
/* The function the input chose: logits z, labels (hard) or targets t (the others). */
static clxent_status call(int function, size_t n, size_t c, const void *z, const int32_t *labels, const void *t,
                          const clxent_opts *o, const clxent_ex *ex, float *loss, void *g) {
  switch (function) {
    case 0: return clxent_softmax_xent_ex(ctx, n, c, z, labels, o, ex, loss, g);
    case 1: return clxent_softmax_xent_soft_ex(ctx, n, c, z, t, o, ex, loss, g);
    case 2: return clxent_sigmoid_xent_ex(ctx, n, c, z, t, o, ex, loss, g);
    default: return clxent_bce_ex(ctx, n, c, z, t, o, ex, loss, g);
  }
}
/* the same bits, or both NaN */
static int same_float(float a, float b) { return !memcmp(&a, &b, sizeof a) || (isnan(a) && isnan(b)); }
static void check_16bit(int function, size_t n, size_t c, const void *saved, const int32_t *labels, const clxent_opts *o,
                        const clxent_ex *ex, const float *loss16, const void *g16) {
  static float z32[MAX_VALUES], t32[MAX_VALUES], g32[MAX_VALUES], loss32[MAX_VALUES], lse32[MAX_N], bias32[MAX_C];
  const size_t values = n * c;
  for (size_t k = 0; k < values; ++k) z32[k] = ref_decode(saved, k, ex->dtype);
  for (size_t k = 0; function != 0 && k < values; ++k) t32[k] = ref_decode(aux, k, ex->dtype); /* hard labels: none */
  clxent_ex x = *ex;
  x.dtype = CLXENT_FLOAT32;
  x.lse = ex->lse ? lse32 : NULL;
  x.bias_grad = ex->bias_grad ? bias32 : NULL; /* the same kernels asked for (the fused bias one) */
  float *loss = loss16 ? loss32 : NULL;
  void *g = g16 ? g32 : NULL;
  const clxent_status st = call(function, n, c, z32, labels, t32, o, &x, loss, g);
  if (st != CLXENT_OK) {
    fprintf(stderr, "fuzz: function %d: the 16-bit call was accepted, float32 on its values: %s (%s)\n", function,
            clxent_status_str(st), clxent_last_error(ctx));
    fail();
  }
  const size_t losses = !loss16 ? 0 : o->reduction != CLXENT_NONE ? 1 : function <= 1 ? n : values;
  for (size_t k = 0; k < losses; ++k)
    if (!same_float(loss16[k], loss32[k])) {
      fprintf(stderr, "fuzz: function %d, %s: loss[%zu] %a, float32 %a (n %zu, c %zu)\n", function,
              ex->dtype == CLXENT_FLOAT16 ? "f16" : "bf16", k, (double)loss16[k], (double)loss32[k], n, c);
      fail();
    }
  for (size_t i = 0; ex->lse && i < n; ++i)
    if (!same_float(ex->lse[i], lse32[i])) {
      fprintf(stderr, "fuzz: function %d: lse[%zu] %a, float32 %a\n", function, i, (double)ex->lse[i], (double)lse32[i]);
      fail();
    }
  for (size_t k = 0; g16 && k < values; ++k) {
    uint16_t want;
    ref_encode(&want, 0, g32[k], ex->dtype);
    const uint16_t got = ((const uint16_t *)g16)[k];
    const float gotf = ref_decode(g16, k, ex->dtype);
    if (got == want || (isnan(gotf) && isnan(g32[k]))) continue;
    fprintf(stderr, "fuzz: function %d, %s: grad[%zu] 0x%04x, float32 %a rounds to 0x%04x (n %zu, c %zu)\n", function,
            ex->dtype == CLXENT_FLOAT16 ? "f16" : "bf16", k, got, (double)g32[k], want, n, c);
    fail();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!ctx) {
    if (clxent_create(&ctx, NULL) != CLXENT_OK) {
      fprintf(stderr, "fuzz: clxent_create: %s\n", clxent_last_error(NULL));
      abort();
    }
    atexit(destroy_ctx); /* before the leak check at exit: what PoCL holds for the context goes */
  }
  input = data, input_size = size;
  reader r = {data, size};
  const int function = (int)(take(&r, 1) % 4);
  const size_t n = 1 + take(&r, 1) % MAX_N, c = 1 + take(&r, 2) % MAX_C;
  clxent_opts o = clxent_opts_default();
  o.reduction = (clxent_reduction)(take(&r, 1) % 4); /* 3 is invalid */
  o.ignore_index = (int32_t)(take(&r, 1) % 4) - 2;   /* -2 .. 1: sometimes a real class */
  const uint32_t flags = take(&r, 1);
  static float weights[MAX_C];
  for (size_t j = 0; j < c; ++j) weights[j] = (flags & 64) ? take_option(&r, 3.0f) : 1.0f;
  if (function <= 1) {
    o.label_smoothing = take_option(&r, 0.99f);
    o.z_loss = take_option(&r, 0.1f);
    o.softcap = take_option(&r, 50.0f);
    if (flags & 1) o.class_weight = weights;
  } else if (flags & 1) {
    o.pos_weight = weights;
  }
  clxent_ex ex = clxent_ex_default();
  ex.dtype = (clxent_dtype)(take(&r, 1) % 4); /* 3 is invalid */
  const size_t esize = ex.dtype == CLXENT_FLOAT32 ? 4 : 2, values = n * c;
  static float in[MAX_VALUES], grad[MAX_VALUES], loss[MAX_VALUES], lse[MAX_N], bias[MAX_C];
  static int32_t labels[MAX_N];
  for (size_t k = 0; k < values; ++k) in[k] = take_float(&r);
  for (size_t k = 0; k < values; ++k) aux[k] = (float)(take(&r, 1) % 5) / 4.0f; /* targets / probabilities */
  if (function == 3) /* probabilities: mostly in [0, 1], where a call is accepted (NaN stays NaN) */
    for (size_t k = 0; k < values; ++k) {
      const float v = ref_decode(in, k, ex.dtype); /* any storage type (the invalid one as fp16) */
      ref_encode(in, k, isnan(v) ? v : fabsf(fmodf(v, 1.0f)), ex.dtype);
    }
  for (size_t i = 0; i < n; ++i) labels[i] = (int32_t)(take(&r, 2) % (c + 4)) - 2;
  const int grad_mode = (int)(flags >> 1 & 3); /* 0 none, 1 separate, 2 in place, 3 separate */
  void *g = grad_mode == 0 ? NULL : grad_mode == 2 ? (void *)in : (void *)grad;
  ex.lse = (flags & 8) && function <= 1 ? lse : NULL;
  ex.bias_grad = (flags & 16) ? bias : NULL;
  float *loss_out = (flags & 32) && g ? NULL : loss;
  static float saved[MAX_VALUES];
  memcpy(saved, in, values * esize);
  poison(grad, sizeof grad), poison(loss, sizeof loss), poison(lse, sizeof lse), poison(bias, sizeof bias);

  const clxent_status st = call(function, n, c, in, labels, aux, &o, &ex, loss_out, g);
  if (st != CLXENT_OK && st != CLXENT_ERR_INVALID_ARG && st != CLXENT_ERR_LABEL_RANGE) {
    fprintf(stderr, "fuzz: unexpected status %s: %s\n", clxent_status_str(st), clxent_last_error(ctx));
    fail();
  }
  if (st != CLXENT_OK) {
    if (!*clxent_last_error(ctx)) fail(); /* a rejection always says why */
    if (!poisoned(grad, sizeof grad) || !poisoned(loss, sizeof loss) || !poisoned(lse, sizeof lse) ||
        !poisoned(bias, sizeof bias) || memcmp(saved, in, values * esize)) {
      fprintf(stderr, "fuzz: a rejected call (%s) wrote an output\n", clxent_last_error(ctx));
      fail();
    }
    return 0;
  }
  if (ex.dtype != CLXENT_FLOAT32) check_16bit(function, n, c, saved, labels, &o, &ex, loss_out, g);
  /* accepted: a float32 call on finite inputs agrees with the reference, every function */
  if (ex.dtype == CLXENT_FLOAT32 && loss_out && o.reduction != CLXENT_NONE) {
    int finite = 1;
    for (size_t k = 0; k < values; ++k) finite &= fabsf(saved[k]) < 1e4f;
    if (finite) {
      static double ref_grad[MAX_VALUES], ref_rows[MAX_VALUES];
      ref_out ref = {.rows = ref_rows, .grad = g ? ref_grad : NULL};
      const double J = function == 0   ? ref_softmax_xent(n, c, saved, labels, &o, &ref)
                       : function == 1 ? ref_softmax_xent_soft(n, c, saved, aux, &o, &ref)
                       : function == 2 ? ref_sigmoid_xent(n, c, saved, aux, &o, &ref)
                                       : ref_bce(n, c, saved, aux, &o, &ref);
      const double tol = 1e-4 * (1 + fabs(J)) * (1 + log((double)c)) * (1 + 100 * o.z_loss);
      /* Σ |loss terms| bounds every partial sum the reduction forms: past float's range the library
       * may give +inf, as float32 PyTorch does (e.g. a pos_weight of 5e36 times a term of 100,
       * divided by n·c afterwards); else the value must match */
      double bound = 0;
      for (size_t k = 0; k < (function <= 1 ? n : values); ++k) bound += fabs(ref_rows[k]);
      const int may_overflow = !(bound <= 0x1p127) && isinf(loss[0]) && loss[0] > 0;
      /* NaN and ±inf (a zero MEAN divisor: every counted row's class weighs 0) must match exactly */
      const int match = isnan(J) ? isnan(loss[0])
                        : isinf(J) ? (double)loss[0] == J
                                   : fabs(loss[0] - J) <= tol || may_overflow;
      if (!match) {
        fprintf(stderr, "fuzz: function %d: loss %.9g, reference %.9g (n %zu, c %zu, eps %g, z %g, cap %g)\n", function,
                loss[0], J, n, c, (double)o.label_smoothing, (double)o.z_loss, (double)o.softcap);
        fail();
      }
      /* the gradient, where the loss is a number: each element within what float32 sums of terms
       * as large as the largest (ref.gscale) err, NaN where the reference's is; values near float's
       * overflow, and differences below its normal range (a subnormal ε's terms), are not what
       * this checks */
      const double gtol = 1e-5 * ref.gscale * (1 + log((double)c)) * (1 + 100 * o.z_loss) + 0x1p-126;
      for (size_t k = 0; g && isfinite(J) && isfinite(gtol) && k < values; ++k) {
        const double want = ref_grad[k], got = ((const float *)g)[k];
        if (isnan(want) ? isnan(got) : fabs(want) > 0x1p120 || fabs(got - want) <= gtol + 1e-4 * fabs(want)) continue;
        fprintf(stderr, "fuzz: function %d: grad[%zu] %.9g, reference %.9g, tolerance %.3g (n %zu, c %zu, eps %g, z %g, cap %g)\n",
                function, k, got, want, gtol + 1e-4 * fabs(want), n, c, (double)o.label_smoothing, (double)o.z_loss,
                (double)o.softcap);
        fail();
      }
    }
  }
  return 0;
}
