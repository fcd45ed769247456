/*
 * Trains a softmax classifier with clxent computing the loss and its gradient.
 *
 * The data set is generated: for each of 2000 students, three features (distance to school in km,
 * hours of sleep, whether it rains) decide whether they are on time, late or absent, with noise.
 * The model is logits = x·W + b (3 features → 3 classes); each step clxent returns the mean
 * cross-entropy, dL/dlogits and, as the bias gradient, Σ_i dL/dlogits_i. The host finishes the
 * chain rule dL/dW = xᵀ·dL/dlogits and takes a gradient step. The loss falls and the accuracy rises.
 *
 * Usage: attendance [device]   (exit 1 if training did not learn)
 */
#include <clxent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { N = 2000, F = 3, C = 3, EPOCHS = 300 };
static const char *const class_names[C] = {"on time", "late", "absent"};

static double uniform(unsigned long long *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*s >> 11) / 9007199254740992.0;
}

/* The rule the model has to discover, blurred by noise. */
static void make_data(float x[N][F], int32_t y[N]) {
  unsigned long long s = 42;
  for (int i = 0; i < N; ++i) {
    const double distance = 10 * uniform(&s), sleep = 4 + 5 * uniform(&s), rain = uniform(&s) < 0.3;
    const double lateness = 0.35 * distance - 0.6 * (sleep - 6.5) + 1.5 * rain + 0.8 * (uniform(&s) - 0.5);
    y[i] = lateness < 1.5 ? 0 : lateness < 3.2 ? 1 : 2;
    x[i][0] = (float)(distance / 10), x[i][1] = (float)((sleep - 6.5) / 2.5), x[i][2] = (float)rain;
  }
}

int main(int argc, char **argv) {
  static float x[N][F], logits[N][C];
  static int32_t y[N];
  float W[F][C] = {{0}}, b[C] = {0}, bias_grad[C], loss = NAN, first_loss = NAN;
  make_data(x, y);

  clxent_ctx *ctx;
  if (clxent_create(&ctx, argc > 1 ? argv[1] : NULL) != CLXENT_OK) {
    fprintf(stderr, "clxent_create: %s\n", clxent_last_error(NULL));
    return 1;
  }
  printf("training a %d-class softmax classifier on %d students, on %s\n", C, N, clxent_device_name(ctx));
  clxent_ex ex = clxent_ex_default();
  ex.bias_grad = bias_grad;
  double accuracy = 0;
  for (int epoch = 0; epoch <= EPOCHS; ++epoch) {
    for (int i = 0; i < N; ++i)
      for (int k = 0; k < C; ++k) {
        float z = b[k];
        for (int f = 0; f < F; ++f) z += x[i][f] * W[f][k];
        logits[i][k] = z;
      }
    int correct = 0;
    for (int i = 0; i < N; ++i) {
      int best = 0;
      for (int k = 1; k < C; ++k)
        if (logits[i][k] > logits[i][best]) best = k;
      correct += best == y[i];
    }
    accuracy = (double)correct / N;
    /* mean loss and its gradient, written over the logits (in place) */
    const clxent_status st = clxent_softmax_xent_ex(ctx, N, C, logits, y, NULL, &ex, &loss, logits);
    if (st != CLXENT_OK) {
      fprintf(stderr, "%s: %s\n", clxent_status_str(st), clxent_last_error(ctx));
      clxent_destroy(ctx);
      return 1;
    }
    if (epoch == 0) first_loss = loss;
    if (epoch % 50 == 0) printf("  epoch %3d  loss %.4f  accuracy %.1f%%\n", epoch, loss, 100 * accuracy);
    const float rate = 2.0f;
    for (int f = 0; f < F; ++f)
      for (int k = 0; k < C; ++k) {
        float g = 0;
        for (int i = 0; i < N; ++i) g += x[i][f] * logits[i][k];
        W[f][k] -= rate * g;
      }
    for (int k = 0; k < C; ++k) b[k] -= rate * bias_grad[k];
  }
  clxent_destroy(ctx);
  printf("weights (rows: distance, sleep, rain; columns: %s, %s, %s)\n", class_names[0], class_names[1],
         class_names[2]);
  for (int f = 0; f < F; ++f) printf("  %7.3f %7.3f %7.3f\n", W[f][0], W[f][1], W[f][2]);
  const int learned = loss < 0.6f * first_loss && accuracy > 0.8;
  printf("loss %.4f → %.4f, accuracy %.1f%%: %s\n", first_loss, loss, 100 * accuracy,
         learned ? "learned" : "did NOT learn");
  return learned ? 0 : 1;
}
