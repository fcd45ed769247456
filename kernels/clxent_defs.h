/*
 * Definitions shared by the host (C) and the kernels (OpenCL C): everything the two sides must
 * agree on is written here once. The build prepends this file to the program source; the host
 * includes it. Keep it valid in both languages: plain macros and one struct of 32-bit fields.
 */
#ifndef CLXENT_DEFS_H
#define CLXENT_DEFS_H

#ifdef __OPENCL_VERSION__
#define CLXENT_F32 float
#define CLXENT_U32 uint
#else
#define CLXENT_F32 cl_float
#define CLXENT_U32 cl_uint
#endif

/* The scalars of a softmax loss call, passed by value to its kernel (host/plan.c fills them). */
typedef struct clxent_params {
  CLXENT_F32 smoothing;   /* label smoothing ε */
  CLXENT_F32 z_loss;      /* z-loss coefficient λ */
  CLXENT_F32 softcap;     /* softcap s, 0 = off */
  CLXENT_F32 scale;       /* gradient scale of the cross-entropy terms (1/divisor for MEAN) */
  CLXENT_F32 z_scale;     /* gradient scale of the z-loss term (1/rows counted for MEAN) */
  CLXENT_F32 z_loss_row;  /* weight of the z-loss term in the per-row loss (host/plan.c) */
  CLXENT_F32 weight_sum;  /* Σ_j weight_j (c without weights) */
  CLXENT_U32 row_threads; /* group variant: work-items per row, a power of two */
  CLXENT_U32 stream_grad; /* row-per-item on an x86 CPU: store the gradient around the caches (launch.c) */
} clxent_params;

/* Values per chunk sum of the elementwise losses' per-value results (reduce.cl chunk_sum). */
#define CLXENT_SUM_CHUNK 64
/* Rows per partial sum of the bias gradient (bias.cl column_partial). */
#define CLXENT_BIAS_CHUNK 64
#define CLXENT_BIAS_ROWS 4 /* the most rows the fused bias kernel adds in one pass (softmax_xent.cl) */
/* One row's stretch of the row kernel's local scratch: c floats rounded up to 16 (launch.c gives
 * an item one or more of them; the bias kernel's held rows take one each) */
#define CLXENT_CACHE_ROW(c) (((c) + 15) / 16 * 16)
/* The fewest classes whose rows the fused bias kernel holds together, e cached in the item's
 * scratch (and then streamed into a separate float32 gradient, launch.c) or in the gradient rows
 * themselves (_OWN). Measured on the Zen 4 (32 KiB of L1 and 1 MiB of L2 a core), rows held
 * together against rows alone, in place (e in the gradient rows): 1.18x the time at c = 4096,
 * 1.11x at 8192, 1.08x at 16384, 1.06x at 24576, 0.97x at 32000, 0.94x at 128256; into a separate
 * gradient (e in the scratch, streamed): 0.95x at 16384, 0.93x at 24576, 0.95x at 32000, 0.93x
 * at 128256; streamed rows alone gained nothing at c = 2048 to 8192 (1.00-1.09x), so they are not
 * streamed (docs/PERFORMANCE.md, fourteenth round). */
#ifndef CLXENT_BIAS_ROWS_MIN_C
#define CLXENT_BIAS_ROWS_MIN_C 16384
#endif
#ifndef CLXENT_BIAS_ROWS_MIN_C_OWN
#define CLXENT_BIAS_ROWS_MIN_C_OWN 28672
#endif
/* Values each work-item adds in one stage of the batch reduction (reduce.cl reduce_sum). */
#define CLXENT_REDUCE_ITEMS 16
/* column_sum_group (reduce.cl, the group variant's second step of the bias gradient): columns a
 * work-group sums, and values each of its items loads per tile (host and kernel share both) */
#define CLXENT_COLSUM_COLS 8
#define CLXENT_COLSUM_LOADS 4
/* Rows of at most this many classes take the short-row kernel (softmax_xent.cl) on the
 * row-per-item variant: a work-item owns CLXENT_VEC rows, one per vector lane; with softcap, whose
 * slopes take a second array, at most CLXENT_SHORT_CAP_C (a work-item's two arrays of 64 vectors
 * took 2x the time at c = 32 in one back-to-back run; one of 64 and one of 32 did not). On PoCL the short kernel takes
 * 0.62x the row kernel's time at c = 33, 0.87x at 48, 0.89-1.02x at 64 (docs/PERFORMANCE.md,
 * fourth round). The host's launch and its direct path (host/direct.c) decide with the same
 * macro. Rows of 33 to 64 classes without softcap took the row kernel before 2026-11-26: their
 * bits differ from earlier versions' (within rounding), as every kernel change's may. */
#define CLXENT_SHORT_C 64
#define CLXENT_SHORT_CAP_C 32
#define CLXENT_SHORT_ROWS(c, softcap) ((c) <= ((softcap) != 0.0f ? CLXENT_SHORT_CAP_C : CLXENT_SHORT_C))
/* Blocks of CLXENT_VEC rows each work-item of the short-row kernel takes, one after the other:
 * PoCL's loop over a group's items costs a hundred-odd instructions per item, as much as the
 * arithmetic of a few columns at c = 10. */
#define CLXENT_SHORT_BLOCKS 2 /* not a build option: the host's launch divides by the same value */
/* The group variant stages rows of CLXENT_GROUP_TILE_MIN to CLXENT_GROUP_TILE classes, one
 * work-item each, through local memory (softmax_xent_hard_tile in kernels/softmax_xent.cl; the
 * host gives it group size · c floats). H100, with the tile still inside softmax_xent_hard
 * (docs/PERFORMANCE.md, third GPU session): c = 10 and 16 took 0.67-0.75x the time, c = 3 1.17x
 * (a warp's reads 12 bytes apart are coalesced enough). H200, as a kernel of its own (fourth
 * session): from 3 classes up it cost 1.12x at c = 3, 1.09x at c = 4, and tied at c = 6. */
#ifndef CLXENT_GROUP_TILE_MIN /* a compile-time option of the host (-D), to measure other ranges */
#define CLXENT_GROUP_TILE_MIN 8
#endif
#define CLXENT_GROUP_TILE 16
/* The row-per-item kernels' first pass walks a row in chunks of this many values (16 KiB of
 * float32: read twice from the L1 cache), and keeps at most this many segments of one running max. */
#define CLXENT_ROW_CHUNK 4096
#define CLXENT_ROW_SEGMENTS 32
/* The row-per-item kernels' software prefetch (softmax_xent.cl, CLXENT_PREFETCH): how many values
 * past the next chunk's read pass 1 asks the cache for, and how many of the next row's first
 * values pass 2 (which reads only the cache) asks for. On PoCL, interleaved with the kernels
 * without it (docs/PERFORMANCE.md, fifth round): 0.94-0.96x the time at 4096 x 32000,
 * 0.96-0.98x at 1024 x 128256, 0.85-0.94x at 16384 x 1000 (float32, in place); 16 384 values
 * ahead instead of 1024 did no better. */
#define CLXENT_PREFETCH_AHEAD 1024
#define CLXENT_PREFETCH_NEXT_ROW (CLXENT_ROW_CHUNK + CLXENT_PREFETCH_AHEAD)
/* The short-row kernel asks for the block of CLXENT_VEC rows this many blocks ahead (logits and
 * gradient): on the AVX-512 EPYC (Zen 4) its column gathers and scatters otherwise waited on
 * memory (71% of its samples on the two instructions); 0.66-0.78x the time at 1048576 x 10,
 * 0.56-0.60x at 524288 x 33; 4, 8 and 16 blocks ahead did alike (docs/PERFORMANCE.md, tenth round) */
#define CLXENT_SHORT_PREFETCH 8
/* Labels per work-item above which label_stats on a GPU (the group variant) counts in several
 * work-groups first (reduce.cl label_stats_part): more than CLXENT_GROUP_SIZE times this many. */
#define CLXENT_LABEL_ITEMS 16
/* Floats written by label_stats: the three gradient scales, then the final divisor. */
#define CLXENT_SCALES_COUNT 4

/* The strided kernel (softmax_strided.cl) on the row-per-item variant: vectors of positions per
 * work-item (the group variant takes one). */
#define CLXENT_STRIDED_TILE_ITEM 4

/* Floats per row written by softmax_slice_stats (softmax_slice.cl): m, s, d, u_y, w_y, as
 * clxent.h's CLXENT_SLICE_VALUES. */
#define CLXENT_SLICE_STRIDE 5

/* Modes of row_information (distributions.cl). */
#define CLXENT_MODE_ENTROPY 0
#define CLXENT_MODE_CROSS_ENTROPY 1
#define CLXENT_MODE_KL 2

/* Storage types (CLXENT_STORAGE in storage.cl): the values of the public clxent_dtype. */
#define CLXENT_STORAGE_F32 0
#define CLXENT_STORAGE_F16 1
#define CLXENT_STORAGE_BF16 2
#define CLXENT_STORAGE_COUNT 3

#endif
