/*
 * Every kernel enqueue of the library. Each builds its kernel's argument list (one entry per
 * parameter of the kernel's own signature in kernels/) and hands it to enqueue(), which sets the
 * arguments and launches, naming the kernel in any error.
 */
#include "internal.h"

typedef struct arg {
  size_t size;
  const void *value; /* NULL with size sizeof(cl_mem): a null buffer; NULL for a __local argument: its bytes */
} arg;
#define ARG(v) ((arg){sizeof(v), &(v)})
#define ARG_MEM(m) ((arg){sizeof(cl_mem), (m) ? (const void *)&(m) : NULL})

static clxent_status enqueue(clxent_ctx *ctx, cl_kernel k, const char *name, const arg *args, cl_uint count,
                             cl_uint dims, const size_t *global, const size_t *local) {
  for (cl_uint i = 0; i < count; ++i) {
    const cl_int err = clSetKernelArg(k, i, args[i].size, args[i].value);
    if (err != CL_SUCCESS)
      return clxent_fail(ctx, clxent_cl_status(err), "clSetKernelArg(%s, argument %u) failed: %s (%d)", name, i,
                         clxent_cl_error_name(err), (int)err);
  }
  PIECE(ctx, "set arguments", name);
  const cl_int err = clEnqueueNDRangeKernel(ctx->queue, k, dims, NULL, global, local, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return clxent_fail(ctx, clxent_cl_status(err), "clEnqueueNDRangeKernel(%s) failed: %s (%d)", name,
                       clxent_cl_error_name(err), (int)err);
  PIECE(ctx, "enqueue kernel", name);
  return CLXENT_OK;
}
#define COUNT(a) ((cl_uint)(sizeof(a) / sizeof((a)[0])))

/* Work-items per row of the group variant's softmax kernels: enough rows per group that short
 * rows still fill the device (about 16 values per item), the whole group for long rows. */
static size_t row_threads(const clxent_ctx *ctx, size_t c) {
  if (ctx->row_threads) return ctx->row_threads;
  size_t t = 1;
  while (t < ctx->group_size && t * 16 < c) t *= 2;
  return t;
}

/* Work-items per group of the row-per-item kernels, for `items` items: a power of two up to the
 * tuning's group size, small enough that every compute unit gets a group. Left to itself PoCL
 * makes a few hundred rows one group, which one worker thread runs while the others idle; and
 * powers of two bound the number of work-group functions it compiles. */
static size_t item_group(const clxent_ctx *ctx, size_t items, size_t most) {
  size_t g = 1;
  while (g * 2 <= most && g * 2 * ctx->compute_units <= items) g *= 2;
  return g;
}

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* A 2-D launch of items0 × items1 (columns × chunks) in explicit power-of-two groups, for the
 * elementwise kernels' reason (launch_rows): the first dimension (neighbouring columns, coalesced
 * on GPUs) as wide as the items and the group allow, the second filling the group, and at least
 * two groups per compute unit where the items make them. The kernels stop past both ranges. */
static void groups_2d(const clxent_ctx *ctx, size_t items0, size_t items1, size_t local[2], size_t global[2]) {
  const size_t want = 2 * ctx->compute_units;
  size_t l0 = 1, l1 = 1;
  while (l0 * 2 <= ctx->group_size && l0 * 2 <= items0 && (items0 + l0 * 2 - 1) / (l0 * 2) * items1 >= want) l0 *= 2;
  while (l0 * l1 * 2 <= ctx->group_size && l1 * 2 <= items1 &&
         (items0 + l0 - 1) / l0 * ((items1 + l1 * 2 - 1) / (l1 * 2)) >= want)
    l1 *= 2;
  local[0] = l0, local[1] = l1;
  global[0] = round_up(items0, l0), global[1] = round_up(items1, l1);
}

/* Either softmax loss with the classes not innermost (kernels/softmax_strided.cl): one work-item
 * per CLXENT_VEC positions of a sample, on every device (neighbouring items read neighbouring
 * vectors: coalesced on GPUs). */
static clxent_status launch_strided(clxent_ctx *ctx, const clxent_rows_launch *l) {
  const cl_ulong rows = l->rows, c = l->c, inner = l->inner, first = l->first_row;
  const size_t span = ctx->vector_width * (ctx->variant == CLXENT_VARIANT_GROUP ? 1 : CLXENT_STRIDED_TILE_ITEM);
  const size_t items = l->rows / l->inner * ((l->inner + span - 1) / span);
  const size_t local = ctx->variant == CLXENT_VARIANT_GROUP ? ctx->group_size : item_group(ctx, items, ctx->group_size);
  const size_t global = (items + local - 1) / local * local;
  const int soft = l->kernel == KERNEL_SOFTMAX_SOFT;
  cl_mem labels = soft ? NULL : l->labels, targets = soft ? l->aux : NULL;
  const arg args[] = {ARG(rows),         ARG(c),          ARG(inner),       ARG(first),     ARG_MEM(l->in),
                      ARG_MEM(labels),   ARG_MEM(targets), ARG_MEM(l->weight), ARG(l->ignore_index), ARG(l->params),
                      ARG_MEM(l->grad),  ARG_MEM(l->out), ARG_MEM(l->lse), ARG_MEM(l->row_scale),
                      ARG_MEM(l->argmax)};
  return enqueue(ctx, ctx->kernels[KERNEL_SOFTMAX_STRIDED][l->dtype], "softmax_xent_strided", args, COUNT(args), 1,
                 &global, &local);
}

/* The chunks of `chunk` batch positions that [first, first + count) touches, count >= 1: the
 * work-items of the chunk-sum kernels (bias.cl, reduce.cl) and of softmax_xent_hard_bias. */
static size_t chunks_touched(size_t first, size_t count, size_t chunk) {
  return (first + count - 1) / chunk - first / chunk + 1;
}

/* Whether launch l adds its gradient rows to the bias partial sums inside the softmax kernel
 * (softmax_xent_hard_bias: one item per chunk of CLXENT_BIAS_CHUNK rows, each row summed while it
 * is in the cache) rather than in column_partial's pass over the whole gradient. The same bits
 * either way; fused only where the long-row kernel runs (hard labels, classes innermost, c past
 * the short rows) and, left to itself, where the block has chunks enough to keep every compute
 * unit busy: an item now owns 64 rows, and a batch of a few chunks would leave cores idle.
 * $CLXENT_FUSED_BIAS=0 never fuses, =1 wherever the kernel can (the tests compare both). */
int clxent_bias_fused(const clxent_ctx *ctx, const clxent_rows_launch *l) {
  if (!l->bias_partial || !l->grad || l->kernel != KERNEL_SOFTMAX_HARD || l->inner > 1 ||
      ctx->variant != CLXENT_VARIANT_ITEM || CLXENT_SHORT_ROWS(l->c, l->params.softcap) ||
      ctx->fused_bias == CLXENT_OFF)
    return 0;
  return ctx->fused_bias == CLXENT_ON ||
         chunks_touched(l->first_row, l->rows, CLXENT_BIAS_CHUNK) >= 2 * (size_t)ctx->compute_units;
}

static clxent_status launch_rows(clxent_ctx *ctx, const clxent_rows_launch *l, int fused);

/* The block's loss kernel, and the bias gradient's chunk sums of its rows when asked for: fused
 * into it (clxent_bias_fused) or by column_partial after it. */
clxent_status clxent_launch_rows(clxent_ctx *ctx, const clxent_rows_launch *l) {
  const int fused = clxent_bias_fused(ctx, l);
  CHECK(launch_rows(ctx, l, fused));
  if (!l->bias_partial || fused) return CLXENT_OK;
  /* elementwise launches count values (rows · cols from value first_row · cols); the partial
   * sums are over their rows of cols classes */
  const int elementwise = l->kernel == KERNEL_SIGMOID_XENT || l->kernel == KERNEL_BCE ||
                          l->kernel == KERNEL_SIGMOID_XENT_SUMS || l->kernel == KERNEL_BCE_SUMS;
  const size_t cols = elementwise ? (size_t)l->cols : l->c;
  return clxent_launch_column_partial(ctx, l->dtype, l->first_row / (elementwise ? cols : 1),
                                      l->rows / (elementwise ? cols : 1), cols, l->inner, l->grad, l->bias_partial);
}

#define STREAM_MIN_C 1536 /* the fewest classes whose rows gain from streamed stores (launch_rows) */

/* fused: clxent_bias_fused(ctx, l), decided once by the caller */
static clxent_status launch_rows(clxent_ctx *ctx, const clxent_rows_launch *l, const int fused) {
  if (l->inner > 1 && (l->kernel == KERNEL_SOFTMAX_HARD || l->kernel == KERNEL_SOFTMAX_SOFT))
    return launch_strided(ctx, l);
  const cl_kernel k = ctx->kernels[l->kernel][l->kernel < KERNEL_TYPED_COUNT ? l->dtype : CLXENT_FLOAT32];
  const cl_ulong rows = l->rows, c = l->c, first = l->first_row;
  const size_t local = ctx->group_size;
  const int grouped = ctx->variant == CLXENT_VARIANT_GROUP;
  size_t global = l->rows;
  switch (l->kernel) {
    case KERNEL_SOFTMAX_HARD:
    case KERNEL_SOFTMAX_SOFT: {
      clxent_params p = l->params;
      p.row_threads = (cl_uint)(grouped ? row_threads(ctx, l->c) : 1);
      if (grouped) {
        const size_t rows_per_group = local / p.row_threads;
        global = (l->rows + rows_per_group - 1) / rows_per_group * local;
      }
      /* Row-per-item: an explicit group (item_group). Short rows (kernels/softmax_xent.cl) take
       * CLXENT_SHORT_BLOCKS blocks of CLXENT_VEC rows per item, whose private arrays also rule out
       * PoCL's own choice of thousands of items per group (they overflowed a worker thread's
       * stack). Long rows with a gradient get a stretch of local memory per item, where pass 1
       * caches the row's exponentials (16-bit storage then computes them once, not twice): on a
       * CPU device local memory is a buffer per worker thread, so the cache stays in its L2 and
       * never goes to memory; the group is as large as half the device's local memory holds, or
       * one item where only the whole of it holds a row (PoCL's 512 KiB: c up to 131072, so that a 128256-class bfloat16 row
       * computes each exponential once: 0.44x its time with the half). */
      const int short_rows = !grouped && l->kernel == KERNEL_SOFTMAX_HARD && CLXENT_SHORT_ROWS(l->c, l->params.softcap);
      const size_t items = short_rows ? (l->rows + CLXENT_SHORT_BLOCKS * ctx->vector_width - 1) /
                                            (CLXENT_SHORT_BLOCKS * ctx->vector_width)
                           : fused    ? chunks_touched(l->first_row, l->rows, CLXENT_BIAS_CHUNK) /* an item per chunk */
                                      : l->rows;
      /* the bias kernel's items are 64 rows each, few per call (64 at 4096 rows): a group each,
       * so that a core the machine's other tenants slow down does not hold the call up with
       * half of them (item_group made two groups of 32 on two cores: 0.93-0.97x the time at
       * 4096 x 32000, 0.97-0.98x at 1024 x 128256, 2026-11-27) */
      size_t item_local = grouped ? local : fused ? 1 : item_group(ctx, items, ctx->group_size);
      cl_ulong stride = 0;
      /* float32 without softcap may cache its e in its own gradient row (the kernel's cache 1
       * through g: the same values, the same bits) instead of the scratch: on the AVX-512 Xeon
       * (vector width 16) that took 0.78-0.85x the time on long rows in place, 0.71-0.80x into a
       * separate gradient, 0.76-0.83x with the bias gradient; on the AVX2 EPYC (width 8) the
       * fifth round measured 1.00x and 1.14x (docs/PERFORMANCE.md, issue 14's seventh round) */
      /* The gradient streamed around the caches (kernels/common.cl, CLXENT_HAS_STREAM: an x86 CPU)
       * from the scratch: into a separate gradient larger than the device's cache, which would
       * leave it anyway (a smaller one stays there for whoever reads it next), with rows of at
       * least STREAM_MIN_C classes; with the bias's fused sums float32 only (they add the values
       * as computed; 16-bit ones would read the stored row back from memory) and only where the
       * kernel holds rows together (CLXENT_BIAS_ROWS_MIN_C: rows alone gained nothing). Ordinary
       * stores first read every line of the gradient from memory. On this project's AMD EPYC
       * (Zen 4, AVX-512), interleaved against ordinary stores: 0.70-0.86x the time at c >= 8192,
       * 0.86-0.97x at c = 1536 to 4096, but 1.14-1.19x at c = 1000 and 1008, float32 and bfloat16
       * alike (docs/PERFORMANCE.md, tenth round). $CLXENT_STREAM_GRAD=1 streams wherever the
       * kernel can (tests), =0 never. Only the loops that stream: no softcap, no weights with
       * smoothing (which would lose the float32 own-row cache and gain nothing). Not float16: its ordinary stores narrow a vector at an
       * address off the vector's size with integer code, elsewhere with the device's conversion,
       * and the two give a NaN different payloads; a streamed row, aligned differently, would move
       * that boundary and change a NaN's bits. */
      const size_t elem = l->dtype == CLXENT_FLOAT32 ? 4 : 2;
      const int stream = l->dtype != CLXENT_FLOAT16 && !grouped && !short_rows &&
                         (!fused || (l->dtype == CLXENT_FLOAT32 && c >= CLXENT_BIAS_ROWS_MIN_C)) &&
                         l->kernel == KERNEL_SOFTMAX_HARD && l->grad &&
                         l->grad != l->in && (ctx->device_type & CL_DEVICE_TYPE_CPU) && CLXENT_HOST_IS_X86 &&
                         ctx->vector_width >= 8 && p.softcap == 0.0f && !(l->weight && p.smoothing > 0.0f) &&
                         (ctx->stream_grad == CLXENT_ON ||
                          (ctx->stream_grad == CLXENT_AUTO && ctx->mem_cache && c >= STREAM_MIN_C &&
                           rows * c * elem > ctx->mem_cache));
      const int own_row = l->dtype == CLXENT_FLOAT32 && p.softcap == 0.0f && ctx->vector_width == 16 && !stream;
      if (!grouped && !short_rows && !own_row && l->kernel == KERNEL_SOFTMAX_HARD && l->grad &&
          CLXENT_CACHE_ROW(c) * sizeof(float) <= ctx->local_mem) {
        stride = CLXENT_CACHE_ROW(c);
        /* softcap: u and e side by side (a stride of two rows, where it fits), so that pass 2
         * needs no exponential (kernels/softmax_xent.cl, cache 3); the same for every storage
         * type, whose results must stay float32's rounded once (float32 on AVX-512 CPUs keeps
         * its e in the gradient row instead, CLXENT_E_IN_G, and leaves the second half unused:
         * 0.93-0.96x the time in place, 0.80x into a separate gradient, at 4096 x 32000) */
        if (p.softcap != 0.0f && 2 * stride * sizeof(float) <= ctx->local_mem) stride *= 2;
        /* the bias kernel's rows held together (kernels/softmax_xent.cl, row_tail): up to 4 rows'
         * e, each in a slot of one row, as many as fit */
        else if (p.softcap == 0.0f && fused) {
          size_t slots = CLXENT_BIAS_ROWS;
          while (slots > 1 && slots * stride * sizeof(float) > ctx->local_mem) slots /= 2;
          stride *= slots;
        }
        while (item_local > 1 && item_local * stride * sizeof(float) > ctx->local_mem / 2) item_local /= 2;
        p.stream_grad = (cl_uint)stream;
      }
      if (!grouped) global = round_up(items, item_local);
      /* the group variant's short rows, one item each: softmax_xent_hard_tile, with a tile of
       * the group's rows in local memory (row_cache) */
      const int tiled = grouped && !fused && l->kernel == KERNEL_SOFTMAX_HARD && p.row_threads == 1 &&
                        c >= CLXENT_GROUP_TILE_MIN && c <= CLXENT_GROUP_TILE &&
                        local * c * sizeof(float) <= ctx->local_mem / 2;
      if (tiled) stride = c;
      const size_t cache_bytes = !stride ? sizeof(float) : (grouped ? local : item_local) * stride * sizeof(float);
      if (l->kernel == KERNEL_SOFTMAX_HARD) {
        const cl_kernel kh = short_rows ? ctx->kernels[KERNEL_SOFTMAX_HARD_SHORT][l->dtype]
                             : fused    ? ctx->kernels[KERNEL_SOFTMAX_HARD_BIAS][l->dtype]
                             : tiled    ? ctx->kernels[KERNEL_SOFTMAX_HARD_TILE][l->dtype]
                                        : k;
        const arg args[] = {ARG(rows),        ARG(c),         ARG(first),
                            ARG_MEM(l->in),   ARG_MEM(l->labels), ARG_MEM(l->weight),
                            ARG(l->ignore_index), ARG(p),     ARG_MEM(l->grad),
                            ARG_MEM(l->out),  ARG_MEM(l->lse), ARG_MEM(l->scales),
                            ARG_MEM(l->row_scale),
                            {cache_bytes, NULL},
                            ARG(stride),      ARG_MEM(l->argmax), ARG_MEM(l->bias_partial)};
        return enqueue(ctx, kh,
                       short_rows ? "softmax_xent_hard_short"
                       : fused    ? "softmax_xent_hard_bias"
                       : tiled    ? "softmax_xent_hard_tile"
                                  : "softmax_xent_hard",
                       args, COUNT(args) - !fused, 1, &global, &item_local);
      }
      const arg args[] = {ARG(rows), ARG(c), ARG(first), ARG_MEM(l->in), ARG_MEM(l->aux), ARG_MEM(l->weight),
                          ARG(p), ARG_MEM(l->grad), ARG_MEM(l->out), ARG_MEM(l->lse), ARG_MEM(l->row_scale),
                          ARG_MEM(l->argmax)};
      return enqueue(ctx, k, "softmax_xent_soft", args, COUNT(args), 1, &global, &item_local);
    }
    case KERNEL_SIGMOID_XENT:
    case KERNEL_BCE:
    case KERNEL_SIGMOID_XENT_SUMS:
    case KERNEL_BCE_SUMS: { /* elementwise on every device */
      /* CLXENT_VEC values per item (kernels/binary.cl), or with the chunk sums 16 chunks of 64
       * values, the out buffer then the chunk sums; in an explicit power-of-two group as the
       * row-per-item kernels: left to choose, PoCL made the group a divisor of the item count
       * (780: one group of 780) and compiled a work-group function for every new count, 0.1-0.2 s
       * each (a BCE loop whose batch sizes vary paid it per size; the fuzzer spent most of its
       * time in LLVM). The kernels stop at count. */
      static const char *const names[] = {"sigmoid_xent", "bce", "sigmoid_xent_sums", "bce_sums"};
      _Static_assert(KERNEL_BCE == KERNEL_SIGMOID_XENT + 1 && KERNEL_SIGMOID_XENT_SUMS == KERNEL_SIGMOID_XENT + 2 &&
                         KERNEL_BCE_SUMS == KERNEL_SIGMOID_XENT + 3,
                     "names[] follows the enum's order");
      const int sums = l->kernel == KERNEL_SIGMOID_XENT_SUMS || l->kernel == KERNEL_BCE_SUMS;
      const size_t items = sums ? (chunks_touched(l->first_row, l->rows, CLXENT_SUM_CHUNK) + 15) / 16
                                : (l->rows + ctx->vector_width - 1) / ctx->vector_width; /* a vector each */
      const size_t item_local = item_group(ctx, items, ctx->group_size);
      global = round_up(items, item_local);
      const cl_int cols = l->cols;
      const cl_float scale = l->params.scale;
      const arg args[] = {ARG(rows), ARG(first), ARG_MEM(l->in), ARG_MEM(l->aux), ARG_MEM(l->weight), ARG(cols),
                          ARG(scale), ARG_MEM(l->grad), ARG_MEM(l->out), ARG_MEM(l->row_scale)};
      return enqueue(ctx, k, names[l->kernel - KERNEL_SIGMOID_XENT], args, COUNT(args), 1, &global, &item_local);
    }
    default: { /* KERNEL_ROW_INFORMATION */
      /* a row per item: an explicit group, for the elementwise kernels' reason */
      const size_t item_local = grouped ? local : item_group(ctx, l->rows, ctx->group_size);
      global = grouped ? l->rows * local : round_up(l->rows, item_local);
      const arg args[] = {ARG(rows), ARG(c), ARG(first), ARG_MEM(l->in), ARG_MEM(l->aux), ARG(l->mode),
                          ARG_MEM(l->out)};
      return enqueue(ctx, k, "row_information", args, COUNT(args), 1, &global, &item_local);
    }
  }
}

size_t clxent_chunk_count(size_t values, size_t chunk) { return (values + chunk - 1) / chunk; }

/* Folds `count` per-value results, at batch position `first`, into the chunk sums. */
clxent_status clxent_launch_chunk_sum(clxent_ctx *ctx, size_t first, size_t count, cl_mem values, cl_mem partial) {
  const cl_ulong count_arg = count, first_arg = first;
  const arg args[] = {ARG(count_arg), ARG(first_arg), ARG_MEM(values), ARG_MEM(partial)};
  const size_t chunks = chunks_touched(first, count, CLXENT_SUM_CHUNK), local = item_group(ctx, chunks, ctx->group_size);
  const size_t global = round_up(chunks, local); /* explicit groups: see the elementwise kernels */
  return enqueue(ctx, ctx->kernels[KERNEL_CHUNK_SUM][0], "chunk_sum", args, COUNT(args), 1, &global, &local);
}

/* Adds gradient rows [first, first + rows) to the bias gradient's chunk sums (kernels/bias.cl). */
clxent_status clxent_launch_column_partial(clxent_ctx *ctx, clxent_dtype dtype, size_t first, size_t rows, size_t c,
                                           size_t inner, cl_mem grad, cl_mem partial) {
  const cl_ulong rows_arg = rows, c_arg = c, first_arg = first, inner_arg = inner;
  if (inner > 1) { /* the strided layout: an item per (column, chunk) */
    const arg args[] = {ARG(rows_arg), ARG(c_arg), ARG(inner_arg), ARG(first_arg), ARG_MEM(grad), ARG_MEM(partial)};
    size_t local[2], global[2];
    groups_2d(ctx, c, chunks_touched(first, rows, CLXENT_BIAS_CHUNK), local, global);
    return enqueue(ctx, ctx->kernels[KERNEL_COLUMN_PARTIAL_STRIDED][dtype], "column_partial_strided", args,
                   COUNT(args), 2, global, local);
  }
  const arg args[] = {ARG(rows_arg), ARG(c_arg), ARG(first_arg), ARG_MEM(grad), ARG_MEM(partial)};
  const size_t chunks = chunks_touched(first, rows, CLXENT_BIAS_CHUNK), items = (c + ctx->vector_width - 1) / ctx->vector_width;
  size_t local[2], global[2];
  groups_2d(ctx, items, chunks, local, global);
  return enqueue(ctx, ctx->kernels[KERNEL_COLUMN_PARTIAL][dtype], "column_partial", args, COUNT(args), 2, global,
                 local);
}

/* out[j] = Σ_k partial[k][j] over the chunks of n rows (kernels/reduce.cl). */
clxent_status clxent_launch_column_sum(clxent_ctx *ctx, size_t n, size_t c, cl_mem partial, cl_mem out) {
  const cl_ulong chunks = clxent_chunk_count(n, CLXENT_BIAS_CHUNK), c_arg = c;
  const arg args[] = {ARG(chunks), ARG(c_arg), ARG_MEM(partial), ARG_MEM(out)};
  if (ctx->variant == CLXENT_VARIANT_GROUP) { /* a group per CLXENT_COLSUM_COLS columns (fewer if the group is smaller) */
    const size_t local = ctx->group_size, cols = local < CLXENT_COLSUM_COLS ? local : CLXENT_COLSUM_COLS;
    const size_t global = (c + cols - 1) / cols * local;
    return enqueue(ctx, ctx->kernels[KERNEL_COLUMN_SUM_GROUP][0], "column_sum_group", args, COUNT(args), 1, &global,
                   &local);
  }
  const size_t items = (c + ctx->vector_width - 1) / ctx->vector_width, local = item_group(ctx, items, ctx->group_size);
  const size_t global = round_up(items, local); /* the items past c stop */
  return enqueue(ctx, ctx->kernels[KERNEL_COLUMN_SUM][0], "column_sum", args, COUNT(args), 1, &global, &local);
}

clxent_status clxent_launch_reduce_stage(clxent_ctx *ctx, size_t count, cl_mem in, cl_mem out, float divisor,
                                         cl_mem divisor_dev, size_t groups) {
  const cl_ulong count_arg = count;
  const cl_float d = divisor;
  const cl_ulong groups_arg = groups;
  const arg args[] = {ARG(count_arg), ARG_MEM(in), ARG_MEM(out), ARG(d), ARG_MEM(divisor_dev), ARG(groups_arg)};
  if (ctx->variant == CLXENT_VARIANT_ITEM) { /* an item per group span, the same sums (kernels/reduce.cl) */
    const size_t local = item_group(ctx, groups, ctx->group_size), global = round_up(groups, local);
    return enqueue(ctx, ctx->kernels[KERNEL_REDUCE_SUM_ITEMS][0], "reduce_sum_items", args, COUNT(args), 1, &global,
                   &local);
  }
  const size_t local = ctx->group_size, global = groups * local;
  return enqueue(ctx, ctx->kernels[KERNEL_REDUCE_SUM][0], "reduce_sum", args, COUNT(args) - 1, 1, &global, &local);
}

clxent_status clxent_launch_label_stats(clxent_ctx *ctx, size_t n, size_t c, cl_mem labels, cl_mem weight,
                                        cl_int ignore_index, int mean, cl_mem scales, cl_mem bad_labels) {
  const cl_ulong n_arg = n, c_arg = c;
  const cl_int mean_arg = mean;
  const size_t local = ctx->group_size;
  /* a GPU: spans of the labels counted by up to a group's worth of groups (kernels/reduce.cl);
   * the spans depend on n and the group size alone, so the sums' order does too */
  cl_mem parts = NULL;
  cl_uint part_count = 0;
  if (ctx->variant == CLXENT_VARIANT_GROUP && n > local * CLXENT_LABEL_ITEMS) {
    const size_t want = (n + local * CLXENT_LABEL_ITEMS - 1) / (local * CLXENT_LABEL_ITEMS);
    part_count = (cl_uint)(want < local ? want : local);
    const cl_ulong span = (n + part_count - 1) / part_count;
    CHECK(clxent_buffer(ctx, SLOT_LABEL_PARTS, 3 * (size_t)part_count * sizeof(cl_uint), &parts));
    const arg part_args[] = {ARG(n_arg), ARG(c_arg), ARG_MEM(labels), ARG_MEM(weight), ARG(ignore_index), ARG(span),
                             ARG_MEM(parts)};
    const size_t global = part_count * local;
    CHECK(enqueue(ctx, ctx->kernels[KERNEL_LABEL_STATS_PART][0], "label_stats_part", part_args, COUNT(part_args), 1,
                  &global, &local));
  }
  const arg args[] = {ARG(n_arg),        ARG(c_arg),    ARG_MEM(labels), ARG_MEM(weight), ARG(ignore_index),
                      ARG(mean_arg),     ARG_MEM(scales), ARG_MEM(bad_labels), ARG_MEM(parts), ARG(part_count)};
  return enqueue(ctx, ctx->kernels[KERNEL_LABEL_STATS][0], "label_stats", args, COUNT(args), 1, &local, &local);
}

clxent_status clxent_launch_slice_stats(clxent_ctx *ctx, clxent_dtype dtype, size_t rows, size_t c, size_t off, cl_mem logits,
                                        cl_mem labels, cl_mem weight, cl_int ignore_index, float cap, int smooth,
                                        cl_mem stats) {
  const cl_ulong rows_arg = rows, c_arg = c;
  const cl_long off_arg = (cl_long)off;
  const cl_float cap_arg = cap;
  const cl_int smooth_arg = smooth;
  const arg args[] = {ARG(rows_arg),     ARG(c_arg),   ARG(off_arg),        ARG_MEM(logits), ARG_MEM(labels),
                      ARG_MEM(weight),   ARG(ignore_index), ARG(cap_arg),   ARG(smooth_arg), ARG_MEM(stats)};
  const size_t local = item_group(ctx, rows, ctx->group_size), global = (rows + local - 1) / local * local;
  return enqueue(ctx, ctx->kernels[KERNEL_SLICE_STATS][dtype], "softmax_slice_stats", args, COUNT(args), 1, &global,
                 &local);
}

clxent_status clxent_launch_slice_grad(clxent_ctx *ctx, clxent_dtype dtype, size_t rows, size_t c, size_t off, size_t c_total,
                                       cl_mem logits, cl_mem labels, cl_mem weight, cl_int ignore_index,
                                       const clxent_params *p, cl_mem lse, cl_mem wy, cl_mem row_scale, cl_mem grad) {
  const cl_ulong rows_arg = rows, c_arg = c;
  const cl_long off_arg = (cl_long)off;
  const cl_float inv_c_total = 1.0f / (float)c_total;
  const arg args[] = {ARG(rows_arg),     ARG(c_arg),        ARG(off_arg),      ARG(inv_c_total),
                      ARG_MEM(logits),   ARG_MEM(labels),   ARG_MEM(weight),   ARG(ignore_index),
                      ARG(*p),           ARG_MEM(lse),      ARG_MEM(wy),       ARG_MEM(row_scale),
                      ARG_MEM(grad)};
  const size_t local = item_group(ctx, rows, ctx->group_size), global = (rows + local - 1) / local * local;
  return enqueue(ctx, ctx->kernels[KERNEL_SLICE_GRAD][dtype], "softmax_slice_grad", args, COUNT(args), 1, &global,
                 &local);
}

/* linear_xent.cl's kernels over one block of rows × classes. The 2-D logits and gradient
 * products are launched in groups of 64 tiles, so that a group's tiles share the rows of h and w
 * they read while those are in the cache: 16 × 4 for the logits, 4 × 16 for the products (best of
 * 8×8, 16×4, 4×16, 64×1, 1×64 on PoCL, docs/PERFORMANCE.md). */
#define LINEAR_TC 4 /* the register tiles of kernels/linear_products.cl: classes × vectors of rows (logits), */
#define LINEAR_TR 2
#define LINEAR_HR 4 /* rows (grad_hidden) or classes (grad_weight) × vectors of k */
#define LINEAR_HK 2
#define LINEAR_WC 4

size_t clxent_linear_packed(const clxent_ctx *ctx, size_t rows, size_t d) {
  return rows * round_up(d, LINEAR_HK * ctx->vector_width);
}

size_t clxent_linear_ldz(size_t classes) { return round_up(classes, 16) + 16; }

size_t clxent_linear_packed_t(const clxent_ctx *ctx, size_t rows, size_t d) {
  return round_up(rows, LINEAR_TR * ctx->vector_width) * d;
}

clxent_status clxent_launch_linear(clxent_ctx *ctx, enum clxent_linear_step step, const clxent_linear_launch *l) {
  const cl_ulong R = l->rows, V = l->classes, v = l->v, d = l->d, first_row = l->first_row, j0 = l->first_class;
  const cl_ulong h_off = l->first_row * l->d, w_off = l->first_class * l->d, ldz = clxent_linear_ldz(l->classes);
  const cl_ulong gh_off = l->gh_row * l->d, z_off = l->z_off;
  const clxent_dtype t = l->dtype;
  const size_t vec = ctx->vector_width;
  size_t global[2], local[2] = {4, 16};
  switch (step) {
    case LINEAR_LOGITS: {
      const cl_ulong b_off = l->first_class;
      const arg args[] = {ARG(R), ARG(V), ARG(d), ARG_MEM(l->hq), ARG_MEM(l->weight), ARG(w_off),
                          ARG_MEM(l->bias), ARG(b_off), ARG_MEM(l->z), ARG(z_off), ARG(ldz)};
      local[0] = 16, local[1] = 4;
      global[0] = round_up((l->classes + LINEAR_TC - 1) / LINEAR_TC, local[0]);
      global[1] = round_up((l->rows + LINEAR_TR * vec - 1) / (LINEAR_TR * vec), local[1]);
      return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_LOGITS][t], "linear_logits", args, COUNT(args), 2, global, local);
    }
    case LINEAR_STATS: {
      const arg args[] = {ARG(R), ARG(V), ARG(v), ARG(j0), ARG(first_row), ARG_MEM(l->z), ARG(z_off), ARG(ldz),
                          ARG_MEM(l->labels), ARG_MEM(l->class_weight), ARG(l->ignore_index), ARG(l->params),
                          ARG_MEM(l->dev_scales), ARG_MEM(l->state), ARG(l->first), ARG(l->last),
                          ARG_MEM(l->row_loss), ARG_MEM(l->row_lse)};
      size_t g = l->rows, lg = item_group(ctx, l->rows, ctx->group_size);
      g = round_up(g, lg);
      return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_STATS][0], "linear_stats", args, COUNT(args), 1, &g, &lg);
    }
    case LINEAR_GRAD: {
      const arg args[] = {ARG(R), ARG(V), ARG(v), ARG(j0), ARG(first_row), ARG_MEM(l->z), ARG(z_off), ARG(ldz),
                          ARG_MEM(l->labels), ARG_MEM(l->class_weight), ARG(l->ignore_index), ARG(l->params),
                          ARG_MEM(l->dev_scales), ARG_MEM(l->state)};
      global[0] = round_up((l->classes + vec - 1) / vec, local[0]);
      global[1] = round_up(l->rows, local[1]);
      return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_GRAD][0], "linear_grad", args, COUNT(args), 2, global, local);
    }
    case LINEAR_PACK_W:
    case LINEAR_PACK_H: { /* the class block of the weight, or the row block of hidden */
      const int w = step == LINEAR_PACK_W;
      const cl_ulong T = w ? V : R, dp = clxent_linear_packed(ctx, 1, l->d), off = w ? w_off : h_off;
      const arg args[] = {ARG(T), ARG(d), ARG(dp), w ? ARG_MEM(l->weight) : ARG_MEM(l->hidden), ARG(off),
                          w ? ARG_MEM(l->wp) : ARG_MEM(l->hp)};
      local[0] = 4, local[1] = 16;
      global[0] = round_up((size_t)dp / (LINEAR_HK * vec), local[0]), global[1] = round_up((size_t)T, local[1]);
      return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_PACK][t], "linear_pack", args, COUNT(args), 2, global, local);
    }
    case LINEAR_PACK_HT: { /* the row block of hidden, transposed, for the logits */
      const arg args[] = {ARG(R), ARG(d), ARG_MEM(l->hidden), ARG(h_off), ARG_MEM(l->hq)};
      local[0] = 64, local[1] = 1;
      global[0] = round_up((size_t)d, local[0]), global[1] = (l->rows + LINEAR_TR * vec - 1) / (LINEAR_TR * vec);
      return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_PACK_T][t], "linear_pack_t", args, COUNT(args), 2, global, local);
    }
    case LINEAR_DHIDDEN: {
      const arg args[] = {ARG(R), ARG(V), ARG(d), ARG_MEM(l->z), ARG(z_off), ARG(ldz), ARG_MEM(l->wp), ARG_MEM(l->gh),
                          ARG(gh_off), ARG(l->first)};
      global[0] = round_up((l->d + LINEAR_HK * vec - 1) / (LINEAR_HK * vec), local[0]);
      global[1] = round_up((l->rows + LINEAR_HR - 1) / LINEAR_HR, local[1]);
      return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_DHIDDEN][t], "linear_dhidden", args, COUNT(args), 2, global,
                     local);
    }
    case LINEAR_DWEIGHT: {
      const arg args[] = {ARG(R), ARG(V), ARG(d), ARG_MEM(l->z), ARG(z_off), ARG(ldz), ARG_MEM(l->hp), ARG_MEM(l->gw),
                          ARG(w_off), ARG(l->first)};
      global[0] = round_up((l->d + LINEAR_HK * vec - 1) / (LINEAR_HK * vec), local[0]);
      global[1] = round_up((l->classes + LINEAR_WC - 1) / LINEAR_WC, local[1]);
      return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_DWEIGHT][t], "linear_dweight", args, COUNT(args), 2, global,
                     local);
    }
    default: { /* LINEAR_DBIAS */
      const cl_ulong gb_off = l->first_class;
      const arg args[] = {ARG(R), ARG(V), ARG_MEM(l->z), ARG(z_off), ARG(ldz), ARG_MEM(l->gb), ARG(gb_off), ARG(l->first)};
      const size_t items = (l->classes + vec - 1) / vec, lg = item_group(ctx, items, ctx->group_size);
      size_t g = round_up(items, lg);
      return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_DBIAS][0], "linear_dbias", args, COUNT(args), 1, &g, &lg);
    }
  }
}

clxent_status clxent_launch_linear_narrow(clxent_ctx *ctx, clxent_dtype dtype, size_t count, cl_mem x, cl_mem out,
                                          size_t offset) {
  const cl_ulong count_arg = count, off = offset;
  const arg args[] = {ARG(count_arg), ARG_MEM(x), ARG_MEM(out), ARG(off)};
  size_t local = ctx->group_size, global = round_up(count, local);
  return enqueue(ctx, ctx->kernels[KERNEL_LINEAR_NARROW][dtype], "linear_narrow", args, COUNT(args), 1, &global,
                 &local);
}
