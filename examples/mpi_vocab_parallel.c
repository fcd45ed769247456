/*
 * A vocabulary split across ranks, checked against one process.
 *
 *   mpirun -np 4 ./build/mpi_vocab_parallel            (add --oversubscribe on a small machine)
 *   mpirun --hostfile hosts -np 16 ./build/mpi_vocab_parallel
 *
 * Every rank makes the same batch of n rows of c classes, keeps only its own slice of the columns
 * (as a tensor-parallel output layer does), and calls clxent_mpi_softmax_xent_vocab(); rank 0
 * then compares the loss with one process's clxent_softmax_xent() on the full rows, and every
 * rank its gradient columns. Exit status 0 when they agree within float32 rounding.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clxent_mpi.h"

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, ranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const size_t n = 64, c = 1000;
  /* this rank's columns: an even split, the remainder on the last rank */
  const size_t width = c / (size_t)ranks, off = width * (size_t)rank;
  const size_t mine = rank == ranks - 1 ? c - off : width;

  float *z = malloc(n * c * sizeof *z), *ref_grad = malloc(n * c * sizeof *ref_grad);
  float *z_mine = malloc(n * mine * sizeof *z_mine), *grad = malloc(n * mine * sizeof *grad);
  int32_t *y = malloc(n * sizeof *y);
  unsigned state = 12345u; /* the same numbers on every rank */
  for (size_t k = 0; k < n * c; ++k) state = state * 1664525u + 1013904223u, z[k] = (float)(state >> 8) * 0x1p-22f - 2.0f;
  for (size_t i = 0; i < n; ++i) state = state * 1664525u + 1013904223u, y[i] = (int32_t)((state >> 8) % c);
  for (size_t i = 0; i < n; ++i) memcpy(z_mine + i * mine, z + i * c + off, mine * sizeof *z);

  clxent_ctx *ctx = NULL;
  if (clxent_create(&ctx, NULL) != CLXENT_OK) {
    fprintf(stderr, "rank %d: %s\n", rank, clxent_last_error(NULL));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  clxent_opts opts = CLXENT_OPTS_INIT;
  opts.label_smoothing = 0.1f;
  float loss = 0.0f, ref_loss = 0.0f;
  clxent_status st = clxent_mpi_softmax_xent_vocab(ctx, MPI_COMM_WORLD, n, mine, off, c, z_mine, y, &opts, &loss, grad);
  if (st != CLXENT_OK) {
    fprintf(stderr, "rank %d: %s\n", rank, clxent_mpi_last_error());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  st = clxent_softmax_xent(ctx, n, c, z, y, &opts, &ref_loss, ref_grad); /* one process, full rows */
  double worst = 0.0;
  for (size_t i = 0; st == CLXENT_OK && i < n; ++i)
    for (size_t j = 0; j < mine; ++j) worst = fmax(worst, fabs((double)grad[i * mine + j] - ref_grad[i * c + off + j]));
  double worst_all = 0.0;
  MPI_Reduce(&worst, &worst_all, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  int ok = st == CLXENT_OK && fabsf(loss - ref_loss) <= 1e-5f * fabsf(ref_loss) && worst_all <= 1e-7;
  if (rank == 0)
    printf("%d ranks, %zu classes each (about): loss %.7f, one process %.7f; largest gradient difference %.2g: %s\n", ranks,
           width, (double)loss, (double)ref_loss, worst_all, ok ? "agree" : "DIFFER");
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  clxent_destroy(ctx);
  free(z), free(ref_grad), free(z_mine), free(grad), free(y);
  MPI_Finalize();
  return ok ? 0 : 1;
}
