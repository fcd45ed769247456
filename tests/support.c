#define _POSIX_C_SOURCE 200809L /* setenv, strdup */
#include "support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the device, or a skip */

static clxent_ctx *probe_ctx; /* made by support_device_present, taken by support_setup */
static void drop_probe(void) {
  clxent_destroy(probe_ctx);
  probe_ctx = NULL;
}

int support_device_present(void) {
  clxent_ctx *ctx = NULL;
  const clxent_status st = clxent_create(&ctx, NULL);
  if (st == CLXENT_ERR_NO_DEVICE) {
    fprintf(stderr, "SKIP: no OpenCL device here: %s\n", clxent_last_error(NULL));
    return 0;
  }
  if (st == CLXENT_OK) {
    static int registered;
    if (!registered) registered = !atexit(drop_probe); /* a program that never takes it */
    drop_probe();
    probe_ctx = ctx;
  }
  return 1;
}

const clxent_config *support_config;

int support_setup(void **state) {
  if (support_config) drop_probe(); /* the probe is an unconfigured context */
  clxent_ctx *ctx = probe_ctx;
  probe_ctx = NULL;
  const clxent_status st = ctx ? CLXENT_OK : clxent_create_ex(&ctx, NULL, support_config);
  if (st != CLXENT_OK) {
    fprintf(stderr, "clxent_create_ex: %s: %s\n", clxent_status_str(st), clxent_last_error(NULL));
    return -1;
  }
  *state = ctx;
  return 0;
}

int support_teardown(void **state) {
  clxent_destroy(*state);
  return 0;
}

clxent_ctx *test_ctx(void **state) { return *state; }

clxent_ctx *support_create(const char *device, const struct clxent_tuning *tuning, const clxent_config *config) {
  clxent_config c = config ? *config : clxent_config_default();
  if (tuning) c.tuning = tuning;
  clxent_ctx *ctx = NULL;
  const clxent_status st = clxent_create_ex(&ctx, device, &c);
  if (st != CLXENT_OK)
    fail_msg("clxent_create_ex(%s%s%s): %s: %s", device ? "\"" : "", device ? device : "NULL", device ? "\"" : "",
             clxent_status_str(st), clxent_last_error(NULL));
  return ctx;
}

/* ---------------------------------------------------------------- environment overrides */

enum { ENV_SLOTS = 16 };
static struct {
  char *name, *value; /* value NULL: was unset */
} env_saved[ENV_SLOTS];
static size_t env_saved_count;

static int env_find(const char *name) {
  for (size_t k = 0; k < env_saved_count; ++k)
    if (!strcmp(env_saved[k].name, name)) return (int)k;
  return -1;
}
static int env_put(const char *name, const char *value) { return value ? setenv(name, value, 1) : unsetenv(name); }

int env_restore(void **state) {
  (void)state;
  while (env_saved_count) { /* each variable was saved once, before its first change */
    --env_saved_count;
    if (env_put(env_saved[env_saved_count].name, env_saved[env_saved_count].value))
      fprintf(stderr, "env_restore: cannot restore %s\n", env_saved[env_saved_count].name);
    free(env_saved[env_saved_count].name), free(env_saved[env_saved_count].value);
  }
  return 0;
}

int env_override(const env_setting *list) {
  for (; list->name; ++list) {
    const int first = env_find(list->name) < 0;
    if (first) {
      const char *old = getenv(list->name);
      if (env_saved_count == ENV_SLOTS) {
        fprintf(stderr, "env_override: more than %d variables\n", (int)ENV_SLOTS);
        return env_restore(NULL), -1;
      }
      env_saved[env_saved_count].name = strdup(list->name);
      env_saved[env_saved_count].value = old ? strdup(old) : NULL;
      const int ok = env_saved[env_saved_count].name && (!old || env_saved[env_saved_count].value);
      ++env_saved_count;
      if (!ok) return fprintf(stderr, "env_override: out of memory\n"), env_restore(NULL), -1;
    }
    if (env_put(list->name, list->value)) {
      fprintf(stderr, "env_override: cannot set %s\n", list->name);
      if (first) { /* unchanged: nothing to restore */
        --env_saved_count;
        free(env_saved[env_saved_count].name), free(env_saved[env_saved_count].value);
      }
      return env_restore(NULL), -1;
    }
  }
  return 0;
}

void env_set(const char *name, const char *value) {
  if (env_find(name) < 0) fail_msg("env_set(%s): not saved by the test's env_override fixture", name);
  if (env_put(name, value)) fail_msg("env_set(%s): cannot set it", name);
}


/* ---------------------------------------------------------------- inputs and checks */

static uint64_t rng_state = 1;
void rng_seed(uint64_t seed) { rng_state = seed * 0x9E3779B97F4A7C15ull + 1; }
static uint64_t rng_next(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
double rng_uniform(double lo, double hi) { return lo + (hi - lo) * (double)(rng_next() >> 11) / 9007199254740992.0; }
uint32_t rng_below(uint32_t bound) { return (uint32_t)(rng_next() % bound); }
void fill_uniform(float *x, size_t k, double lo, double hi) {
  for (size_t i = 0; i < k; ++i) x[i] = (float)rng_uniform(lo, hi);
}
void fill_distribution_rows(float *p, size_t n, size_t c, double zero_fraction) {
  for (size_t i = 0; i < n; ++i) {
    double s = 0;
    for (size_t j = 0; j < c; ++j) {
      const double v = rng_uniform(0, 1) < zero_fraction ? 0.0 : rng_uniform(0.01, 1);
      p[i * c + j] = (float)v;
      s += v;
    }
    if (s == 0) p[i * c] = 1.0f, s = 1;
    for (size_t j = 0; j < c; ++j) p[i * c + j] = (float)(p[i * c + j] / s);
  }
}

static const uint32_t poison_bits = 0x7FC0DEADu; /* a quiet NaN with a payload no computation makes */
void poison(float *x, size_t k) {
  for (size_t i = 0; i < k; ++i) memcpy(&x[i], &poison_bits, sizeof poison_bits);
}
int is_poison(const float *x, size_t k) {
  for (size_t i = 0; i < k; ++i)
    if (memcmp(&x[i], &poison_bits, sizeof poison_bits)) return 0;
  return 1;
}
clxent_opts support_opts(clxent_reduction reduction, const float *w, int smoothing, int zloss, int softcap, int upstream,
                         const float *up, int denominator) {
  static const float g_one = 0.75f;
  clxent_opts o = CLXENT_OPTS_INIT;
  o.reduction = reduction;
  o.class_weight = w;
  if (smoothing) o.label_smoothing = 0.1f;
  if (zloss) o.z_loss = 1e-3f;
  if (softcap) o.softcap = 5.0f;
  if (upstream) o.grad_output = reduction == CLXENT_NONE ? up : &g_one;
  if (denominator) o.mean_denominator = 300.0;
  return o;
}

void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) fail_msg("malloc(%zu) failed", bytes);
  return p;
}

void store_dtype(void *x, size_t i, clxent_dtype t, float v) {
  if (t == CLXENT_FLOAT32) ((float *)x)[i] = v;
  else if (t == CLXENT_BFLOAT16) ((uint16_t *)x)[i] = ref_to_bf16(v);
  else ((uint16_t *)x)[i] = ref_to_f16(v);
}

double load_dtype(const void *x, size_t i, clxent_dtype t) {
  if (t == CLXENT_FLOAT32) return ((const float *)x)[i];
  return t == CLXENT_BFLOAT16 ? ref_from_bf16(((const uint16_t *)x)[i]) : ref_from_f16(((const uint16_t *)x)[i]);
}

void support_poisoned_call(clxent_ctx *ctx, size_t n, size_t c, const void *logits, const int32_t *labels,
                           const clxent_opts *opts, const clxent_ex *x, const support_outputs *o, int in_place,
                           const char *what) {
  const size_t esize = x->dtype == CLXENT_FLOAT32 ? 4 : 2;
  if (o->grad) memset(o->grad, 0xA5, n * c * esize);
  poison(o->loss, opts->reduction == CLXENT_NONE ? n : 1);
  if (o->lse) poison(o->lse, n);
  if (o->bias) poison(o->bias, c);
  if (o->argmax) memset(o->argmax, 0xA5, n * sizeof(int32_t));
  const void *in = logits;
  if (in_place) memcpy(o->grad, logits, n * c * esize), in = o->grad;
  const clxent_status st = clxent_softmax_xent_ex(ctx, n, c, in, labels, opts, x, o->loss, o->grad);
  if (st != CLXENT_OK) fail_msg("%s: %s: %s", what, clxent_status_str(st), clxent_last_error(ctx));
}

void support_special_rows(void *logits, int32_t *labels, size_t n, size_t c, clxent_dtype t) {
  if (n > 2) labels[n / 2] = -100;
  if (n > 4) {
    for (size_t j = 0; j < c / 2; ++j) store_dtype(logits, 3 * c + j, t, -INFINITY);
    store_dtype(logits, 3 * c + c - 1, t, 1e4f);
    labels[3] = (int32_t)(c - 1);
  }
  if (n > 5) store_dtype(logits, 5 * c + c / 3, t, NAN);
}

void assert_same_bytes(const void *got, const void *want, size_t bytes, const char *what) {
  if (memcmp(got, want, bytes) == 0) return;
  const unsigned char *a = got, *b = want;
  size_t at = 0;
  while (a[at] == b[at]) ++at;
  fail_msg("%s: differs at byte %zu of %zu", what, at, bytes);
}

void assert_close(const float *got, const double *ref, size_t k, double atol, double rtol, const char *what) {
  for (size_t i = 0; i < k; ++i) {
    const double g = got[i], r = ref[i];
    int ok;
    if (isnan(r)) ok = isnan(g);
    else if (isinf(r)) ok = g == r;
    else ok = !isnan(g) && fabs(g - r) <= atol + rtol * fabs(r);
    if (!ok) fail_msg("%s[%zu]: got %.9g, reference %.9g (atol %g, rtol %g)", what, i, g, r, atol, rtol);
  }
}
