/*
 * clxent-mpi-bench: per call of each mode, the compute time, the time in MPI collectives and the
 * bytes each rank sends and receives (clxent_mpi_last_stats), the worst rank's, as the median of
 * the calls. Run it under mpirun with the rank counts to compare:
 *
 *   mpirun -np 4 ./build/clxent_mpi_bench [n c calls]     (defaults 4096 rows, 8192 classes, 10)
 *
 * data-parallel: the global batch is n rows of c classes, split evenly by rows;
 * vocab-parallel: all n rows on every rank, the c classes split evenly by columns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clxent_mpi.h"

static int cmp(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, ranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 4096, c = argc > 2 ? strtoul(argv[2], NULL, 10) : 8192;
  const int calls = argc > 3 ? atoi(argv[3]) : 10;
  clxent_ctx *ctx = NULL;
  if (clxent_create(&ctx, NULL) != CLXENT_OK) {
    fprintf(stderr, "rank %d: %s\n", rank, clxent_last_error(NULL));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  const size_t rows = n / (size_t)ranks + ((size_t)rank < n % (size_t)ranks);
  const size_t width = c / (size_t)ranks + ((size_t)rank < c % (size_t)ranks);
  size_t off = 0;
  for (int q = 0; q < rank; ++q) off += c / (size_t)ranks + ((size_t)q < c % (size_t)ranks);
  const size_t biggest = rows * c > n * width ? rows * c : n * width;
  float *z = malloc(biggest * sizeof *z), *g = malloc(biggest * sizeof *g), loss;
  int32_t *y = malloc(n * sizeof *y);
  srand(7);
  for (size_t k = 0; k < biggest; ++k) z[k] = (float)rand() / (float)RAND_MAX * 8.0f - 4.0f;
  for (size_t i = 0; i < n; ++i) y[i] = (int32_t)((size_t)rand() % c);
  double *t = malloc((size_t)calls * 3 * sizeof *t);
  if (rank == 0) printf("ranks mode            rows/rank cols/rank  total_ms compute_ms comm_ms  bytes_sent bytes_recv\n");
  for (int mode = 0; mode < 2; ++mode) {
    clxent_mpi_stats s = {0};
    for (int k = -1; k < calls; ++k) { /* one warm-up call */
      const clxent_status st = mode == 0 ? clxent_mpi_softmax_xent(ctx, MPI_COMM_WORLD, rows, c, z, y, NULL, &loss, g)
                                         : clxent_mpi_softmax_xent_vocab(ctx, MPI_COMM_WORLD, n, width, off, c, z, y,
                                                                         NULL, &loss, g);
      if (st != CLXENT_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, clxent_mpi_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      s = clxent_mpi_last_stats();
      double mine[3] = {s.total_s, s.total_s - s.comm_s, s.comm_s}, worst[3];
      MPI_Allreduce(mine, worst, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (k >= 0) memcpy(t + 3 * k, worst, sizeof worst);
    }
    double med[3];
    for (int f = 0; f < 3; ++f) {
      double v[1024];
      for (int k = 0; k < calls && k < 1024; ++k) v[k] = t[3 * k + f];
      qsort(v, (size_t)(calls < 1024 ? calls : 1024), sizeof *v, cmp);
      med[f] = v[(calls < 1024 ? calls : 1024) / 2];
    }
    unsigned long long sent = s.bytes_sent, recv = s.bytes_received, most[2];
    unsigned long long mine2[2] = {sent, recv};
    MPI_Reduce(mine2, most, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0)
      printf("%5d %-15s %9zu %9zu %9.3f %10.3f %7.3f %11llu %10llu\n", ranks, mode ? "vocab-parallel" : "data-parallel",
             mode ? n : rows, mode ? width : c, med[0] * 1e3, med[1] * 1e3, med[2] * 1e3, most[0], most[1]);
  }
  clxent_destroy(ctx);
  free(z), free(g), free(y), free(t);
  MPI_Finalize();
  return 0;
}
