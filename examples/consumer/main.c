/* A program built against an installed clxent, the way a user builds one: it computes the seed's
 * worked value -ln 0.3 = 1.204 (label [0,0,1], predictions [0.1,0.6,0.3]) on the default device. */
#include <clxent.h>
#include <math.h>
#include <stdio.h>

int main(void) {
  if (clxent_version() != CLXENT_VERSION_NUMBER) {
    fprintf(stderr, "header %d, library %u (%s)\n", CLXENT_VERSION_NUMBER, clxent_version(), clxent_version_string());
    return 1;
  }
  clxent_ctx *ctx;
  if (clxent_create(&ctx, NULL) != CLXENT_OK) {
    fprintf(stderr, "clxent_create: %s\n", clxent_last_error(NULL));
    return 1;
  }
  const float logits[3] = {logf(0.1f), logf(0.6f), logf(0.3f)};
  const int32_t label = 2;
  float loss, grad[3];
  const clxent_status st = clxent_softmax_xent(ctx, 1, 3, logits, &label, NULL, &loss, grad);
  if (st != CLXENT_OK) fprintf(stderr, "%s: %s\n", clxent_status_str(st), clxent_last_error(ctx));
  printf("clxent %s on %s: -ln 0.3 = %.3f, gradient [%.3f, %.3f, %.3f]\n", clxent_version_string(),
         clxent_device_name(ctx), loss, grad[0], grad[1], grad[2]);
  clxent_destroy(ctx);
  return st == CLXENT_OK && fabsf(loss - 1.204f) < 1e-3f ? 0 : 1;
}
