/*
 * Large host copies split over threads: the pipelined path's staging copies (pipeline.c), between
 * the caller's ordinary arrays and pinned memory.
 *
 * Why: one thread's memcpy moves some 10 GB/s, a GPU's DMA 55 GB/s each way at once. On an H200
 * the call with ordinary arrays took 8.2× the transfer time, against 0.63× with pinned arrays,
 * and the difference was the calling thread's staging copies (docs/PERFORMANCE.md, "NVIDIA GPU").
 * A copy of at least COPY_SPLIT_MIN bytes is cut into one piece per thread, up to COPY_THREADS
 * threads and no more than the processors online (sysconf: a container's CPU quota is not seen,
 * which costs only threads that wait their turn); the calling thread copies the first piece.
 * Threads are made per copy (tens of microseconds against milliseconds of copying), so nothing
 * outlives the call: no pool to stop at clxent_destroy, nothing to break across fork(). A thread
 * that cannot be made leaves its piece to the calling thread: the copy is always whole.
 */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define COPY_THREADS 8
#define COPY_SPLIT_MIN ((size_t)16 << 20) /* below this, one memcpy: splitting costs more */
#define COPY_PIECE_MIN ((size_t)4 << 20)

typedef struct copy_piece {
  unsigned char *dst;
  const unsigned char *src;
  size_t bytes;
} copy_piece;

static void *copy_piece_run(void *arg) {
  const copy_piece *p = arg;
  memcpy(p->dst, p->src, p->bytes);
  return NULL;
}

/* Threads for a copy of `bytes`: one per COPY_PIECE_MIN, at most the processors online and
 * COPY_THREADS. */
static size_t copy_threads(size_t bytes) {
  if (bytes < COPY_SPLIT_MIN) return 1;
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  size_t t = online > 1 ? (size_t)online : 1;
  if (t > COPY_THREADS) t = COPY_THREADS;
  if (t > bytes / COPY_PIECE_MIN) t = bytes / COPY_PIECE_MIN;
  return t ? t : 1;
}

void clxent_copy_split(void *dst, const void *src, size_t bytes, size_t t) {
  if (t > COPY_THREADS) t = COPY_THREADS;
  if (t > bytes / 64) t = bytes / 64; /* pieces of whole cache lines */
  if (t <= 1) {
    memcpy(dst, src, bytes);
    return;
  }
  copy_piece pieces[COPY_THREADS];
  pthread_t threads[COPY_THREADS];
  int started[COPY_THREADS] = {0};
  /* pieces of whole cache lines, the last one taking the rest */
  const size_t piece = bytes / t / 64 * 64;
  for (size_t k = 0; k < t; ++k) {
    pieces[k].dst = (unsigned char *)dst + k * piece;
    pieces[k].src = (const unsigned char *)src + k * piece;
    pieces[k].bytes = k + 1 < t ? piece : bytes - k * piece;
  }
  for (size_t k = 1; k < t; ++k) started[k] = pthread_create(&threads[k], NULL, copy_piece_run, &pieces[k]) == 0;
  copy_piece_run(&pieces[0]);
  for (size_t k = 1; k < t; ++k) {
    if (started[k]) pthread_join(threads[k], NULL);
    else copy_piece_run(&pieces[k]);
  }
}

void clxent_copy(void *dst, const void *src, size_t bytes) { clxent_copy_split(dst, src, bytes, copy_threads(bytes)); }
