/* Test support: the shared context, skipping without a device, environment overrides a failing
 * test cannot leak, random inputs, poisoned outputs and tolerance checks. The float64 reference of
 * every clxent function is in reference.h (no cmocka there: the fuzz harness links it too). */
#ifndef CLXENT_TEST_SUPPORT_H
#define CLXENT_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs these first */
#include <cmocka.h>

#include "clxent.h"
#include "reference.h"

/* Exit status of a test program that cannot run here (no OpenCL platform or device): CTest's
 * SKIP_RETURN_CODE, as in Automake. */
#define SUPPORT_SKIP 77

/* Whether clxent_create(NULL) finds a device. On CLXENT_ERR_NO_DEVICE it says why on stderr and
 * returns 0: main() then returns SUPPORT_SKIP before running anything. Any other result returns 1
 * (a failure to create is then the tests' to report). The context it made is kept for
 * support_setup, so that the check costs no second context. Call it after any setenv that must
 * precede the first OpenCL call. */
int support_device_present(void);

/* A context on $CLXENT_DEVICE (CI: PoCL), shared by a test file; created in group setup, with
 * support_config if main() set it (else as clxent_create(NULL) makes it). */
extern const clxent_config *support_config;
int support_setup(void **state);
int support_teardown(void **state);
clxent_ctx *test_ctx(void **state);

/* A context configured in code: clxent_create_ex(device, config) with config->tuning replaced by
 * tuning where that is not NULL (config NULL: CLXENT_CONFIG_INIT). What the two leave unset comes
 * from the environment as for any caller: in CTest the run's CLXENT_VARIANT and CLXENT_ZERO_COPY,
 * so leave tuning->variant AUTO unless the test is about another. A failure fails the test with
 * the status and clxent_last_error(NULL). The struct is the experimental clxent_tuning (define
 * CLXENT_EXPERIMENTAL_API to fill one). */
clxent_ctx *support_create(const char *device, const struct clxent_tuning *tuning, const clxent_config *config);

/* Deterministic random numbers. */
void rng_seed(uint64_t seed);
double rng_uniform(double lo, double hi);
uint32_t rng_below(uint32_t bound);
void fill_uniform(float *x, size_t k, double lo, double hi);
void fill_distribution_rows(float *p, size_t n, size_t c, double zero_fraction); /* rows sum to 1 */

/* The options the tests' configuration tables name: class weights w (or NULL), and where asked
 * ε = 0.1, λ = 1e-3, softcap 5, grad_output (MEAN and SUM: g = 0.75; NONE: up, one per row) and
 * mean_denominator 300 (MEAN only). */
clxent_opts support_opts(clxent_reduction reduction, const float *w, int smoothing, int zloss, int softcap, int upstream,
                         const float *up, int denominator);

/* Outputs are poisoned with this NaN before every call, so an element the call did not write fails. */
void poison(float *x, size_t k);
int is_poison(const float *x, size_t k); /* every element still the exact poison bits */
void *xmalloc(size_t bytes);

/* Environment overrides that a failing test cannot leak, for the tests about the environment
 * itself ($CLXENT_DEVICE, a bad CLXENT_* value, XDG_CACHE_HOME); a test that only needs a context
 * configured some way makes it with support_create instead. A test that changes variables runs as cmocka_unit_test_setup_teardown(test, setup, env_restore) where setup calls
 * env_override(list): every variable of the list is saved, then set to its value (NULL: unset).
 * Inside the test, env_set() changes only variables so saved (any other fails the test). env_restore puts back every saved value; cmocka runs it after a failed assertion too,
 * and env_override restores by itself when it fails, since cmocka then skips the teardown. */
typedef struct env_setting {
  const char *name, *value; /* value NULL: unset */
} env_setting;
/* list ends with {NULL, NULL}. Returns 0, or -1 (everything restored) if a variable cannot be set. */
int env_override(const env_setting *list);
void env_set(const char *name, const char *value); /* value NULL: unset */
int env_restore(void **state);                     /* a cmocka teardown */


/* Dense arrays of a storage type: x[i] = v (16-bit types rounded to nearest even), and x[i] widened. */
void store_dtype(void *x, size_t i, clxent_dtype t, float v);
double load_dtype(const void *x, size_t i, clxent_dtype t);
/* A softmax call's outputs (any may be NULL but loss), and the call with each poisoned first (the
 * gradient's and argmax's bytes 0xA5, floats poison()), so that an element the call leaves unwritten
 * differs between two calls; the call runs on a copy of the logits in grad when in_place. x->dtype
 * says the storage; x's lse, argmax and bias_grad are the caller's to point at o's. Fails the test,
 * naming what, unless the call succeeds. */
typedef struct support_outputs {
  void *grad;
  float *loss, *lse, *bias;
  int32_t *argmax;
} support_outputs;
void support_poisoned_call(clxent_ctx *ctx, size_t n, size_t c, const void *logits, const int32_t *labels,
                           const clxent_opts *opts, const clxent_ex *x, const support_outputs *o, int in_place,
                           const char *what);

/* Rows of a random batch that take the kernels' other paths, where the batch has them: row n/2
 * ignored (label -100), row 3 masked (its first half -inf) with a +1e4 logit at its label c - 1,
 * row 5 holding a NaN. */
void support_special_rows(void *logits, int32_t *labels, size_t n, size_t c, clxent_dtype t);

/* The two byte ranges equal, else a failure naming what and the first byte that differs. */
void assert_same_bytes(const void *got, const void *want, size_t bytes, const char *what);

/* got[k] ≈ ref[k] within atol + rtol·|ref| (NaN only where ref is NaN, same-signed inf where ref is
 * inf); reports the first mismatch with its index and what. */
void assert_close(const float *got, const double *ref, size_t k, double atol, double rtol, const char *what);

#define ASSERT_OK(ctx, call)                                                                              \
  do {                                                                                                    \
    const clxent_status st_ = (call);                                                                     \
    if (st_ != CLXENT_OK) fail_msg("%s -> %s: %s", #call, clxent_status_str(st_), clxent_last_error(ctx)); \
  } while (0)

#endif
