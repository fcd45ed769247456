/*
 * Storage of the dense arrays (logits or probabilities, dense targets, the gradient). The host
 * includes this file and then every typed kernel file once per storage type, with CLXENT_STORAGE
 *   0  float32        1  float16 (core OpenCL's vload_half/vstore_half_rte, and integer code for
 *                        vectors: no cl_khr_fp16 needed)
 *   2  bfloat16 (16-bit integers; widened by a shift, narrowed with round-to-nearest-even)
 * and each pass names its kernels and helpers with the type's suffix (softmax_xent_hard_f16, ...).
 * Math is float32 for every type; only loads and stores change.
 *
 *   store_t           the element type of the arrays in memory
 *   LOAD(p, j)        float  p[j]           STORE(v, p, j)     p[j] = v
 *   LOADV(p, j)       floatv p[j .. j+VEC)  STOREV(v, p, j)    (j a multiple of CLXENT_VEC)
 */

#undef store_t
#undef CLXENT_SUFFIX
#undef LOAD
#undef STORE
#undef LOADV
#undef STOREV

#define CLXENT_CVT(to, x) CLXENT_CAT(CLXENT_CAT(convert_, to), CLXENT_VEC)(x)
#define CLXENT_AS(to, x) CLXENT_CAT(CLXENT_CAT(as_, to), CLXENT_VEC)(x)

#if CLXENT_STORAGE == CLXENT_STORAGE_F32
#define store_t float
#define CLXENT_SUFFIX _f32
#define LOAD(p, j) ((p)[j])
#define STORE(v, p, j) ((p)[j] = (v))
#define LOADV(p, j) vloadv(0, (p) + (j))
#define STOREV(v, p, j) vstorev_g((v), (p) + (j))
#elif CLXENT_STORAGE == CLXENT_STORAGE_F16
#define store_t ushort
#define CLXENT_SUFFIX _f16
#define LOAD(p, j) vload_half(0, (__global const half *)((p) + (j)))
#define STORE(v, p, j) vstore_half_rte((v), 0, (__global half *)((p) + (j)))
#define LOADV(p, j) load_halfv((p) + (j))
#define STOREV(v, p, j) store_halfv((v), (p) + (j))
#elif CLXENT_STORAGE == CLXENT_STORAGE_BF16
#define store_t ushort
#define CLXENT_SUFFIX _bf16
#define LOAD(p, j) bf16_to_float((p)[j])
#define STORE(v, p, j) ((p)[j] = float_to_bf16(v))
#define LOADV(p, j) CLXENT_AS(float, CLXENT_CVT(uint, load_ushortv((p) + (j))) << 16)
#define STOREV(v, p, j) store_ushortv(float_to_bf16v(v), (p) + (j))
#else
#error "CLXENT_STORAGE must be 0 (float32), 1 (float16) or 2 (bfloat16)"
#endif

/* Typed names: each is defined once per storage type. */
#undef row_max
#undef row_exp_sum_cached
#undef range_max
#undef range_first_eq
#undef range_first_nan
#undef range_exp_sum
#undef next_range
#undef range_scale
#undef row_fill
#undef strided_lse
#undef tile_lse
#undef softmax_xent_hard
#undef softmax_xent_hard_tile
#undef hard_group_rows
#undef softmax_xent_soft
#undef softmax_xent_hard_short
#undef short_block
#undef hard_row
#undef row_add
#undef row_tail
#undef row_tails_pass2
#undef softmax_xent_hard_bias
#undef pos_weight_of
#undef pos_weights_of
#undef sigmoid_xent
#undef bce
#undef sigmoid_xent_sums
#undef bce_sums
#undef column_partial
#undef column_partial_strided
#undef strided_load
#undef strided_store
#undef softmax_xent_strided
#undef softmax_slice_stats
#undef softmax_slice_grad
#undef linear_logits
#undef linear_dhidden
#undef linear_dweight
#undef linear_narrow
#undef lin_product
#undef linear_pack
#undef linear_pack_t
#undef lin_load_part
#undef lin_store_part
#define CLXENT_TYPED(name) CLXENT_CAT(name, CLXENT_SUFFIX)
#define row_max CLXENT_TYPED(row_max)
#define row_exp_sum_cached CLXENT_TYPED(row_exp_sum_cached)
#define range_max CLXENT_TYPED(range_max)
#define range_first_eq CLXENT_TYPED(range_first_eq)
#define range_first_nan CLXENT_TYPED(range_first_nan)
#define range_exp_sum CLXENT_TYPED(range_exp_sum)
#define next_range CLXENT_TYPED(next_range)
#define range_scale CLXENT_TYPED(range_scale)
#define row_fill CLXENT_TYPED(row_fill)
#define strided_lse CLXENT_TYPED(strided_lse)
#define tile_lse CLXENT_TYPED(tile_lse)
#define softmax_xent_hard CLXENT_TYPED(softmax_xent_hard)
#define softmax_xent_hard_tile CLXENT_TYPED(softmax_xent_hard_tile)
#define hard_group_rows CLXENT_TYPED(hard_group_rows)
#define softmax_xent_soft CLXENT_TYPED(softmax_xent_soft)
#define softmax_xent_hard_short CLXENT_TYPED(softmax_xent_hard_short)
#define short_block CLXENT_TYPED(short_block)
#define hard_row CLXENT_TYPED(hard_row)
#define row_add CLXENT_TYPED(row_add)
#define row_tail CLXENT_TYPED(row_tail)
#define row_tails_pass2 CLXENT_TYPED(row_tails_pass2)
#define softmax_xent_hard_bias CLXENT_TYPED(softmax_xent_hard_bias)
#define pos_weight_of CLXENT_TYPED(pos_weight_of)
#define pos_weights_of CLXENT_TYPED(pos_weights_of)
#define sigmoid_xent CLXENT_TYPED(sigmoid_xent)
#define bce CLXENT_TYPED(bce)
#define sigmoid_xent_sums CLXENT_TYPED(sigmoid_xent_sums)
#define bce_sums CLXENT_TYPED(bce_sums)
#define column_partial CLXENT_TYPED(column_partial)
#define column_partial_strided CLXENT_TYPED(column_partial_strided)
#define strided_load CLXENT_TYPED(strided_load)
#define strided_store CLXENT_TYPED(strided_store)
#define softmax_xent_strided CLXENT_TYPED(softmax_xent_strided)
#define softmax_slice_stats CLXENT_TYPED(softmax_slice_stats)
#define softmax_slice_grad CLXENT_TYPED(softmax_slice_grad)
#define linear_logits CLXENT_TYPED(linear_logits)
#define linear_dhidden CLXENT_TYPED(linear_dhidden)
#define linear_dweight CLXENT_TYPED(linear_dweight)
#define linear_narrow CLXENT_TYPED(linear_narrow)
#define lin_product CLXENT_TYPED(lin_product)
#define linear_pack CLXENT_TYPED(linear_pack)
#define linear_pack_t CLXENT_TYPED(linear_pack_t)
#define lin_load_part CLXENT_TYPED(lin_load_part)
#define lin_store_part CLXENT_TYPED(lin_store_part)

/* STREAMV(v, p, j): STOREV's value and bits, stored around the caches (CLXENT_HAS_STREAM), at an
 * address that is a multiple of CLXENT_STREAM_ALIGN bytes (the vector's size: a non-temporal store
 * must be aligned). 16-bit values pass through an empty asm that holds them in a register: without
 * it x86's backend folds the narrowing into the store (vpmovdw to memory), which cannot be
 * non-temporal, and the hint is silently dropped. */
#undef STREAMV
#undef CLXENT_STREAM_ALIGN
#define CLXENT_STREAM_ALIGN (CLXENT_VEC * sizeof(store_t))
#if CLXENT_HAS_STREAM && CLXENT_STORAGE == CLXENT_STORAGE_F32
#define STREAMV(v, p, j) __builtin_nontemporal_store((floatv)(v), (__global floatv *)((p) + (j)))
#elif CLXENT_HAS_STREAM && CLXENT_STORAGE == CLXENT_STORAGE_BF16
#undef clxent_stream_bits
#define clxent_stream_bits CLXENT_TYPED(clxent_stream_bits)
inline void clxent_stream_bits(ushortv b, __global ushort *p) {
  __asm__("" : "+v"(b));
  __builtin_nontemporal_store(b, (__global ushortv *)p);
}
#define STREAMV(v, p, j) clxent_stream_bits(float_to_bf16v(v), (p) + (j))
#elif CLXENT_HAS_STREAM /* float16: never streamed (host/launch.c says why) */
#define STREAMV(v, p, j) STOREV(v, p, j)
#endif

/* max_j z_j over a row (one-item-per-row variant): compare-select, one maxps per vector; a NaN is
 * skipped here and reaches the loss through the sum of exponentials instead. */
inline float row_max(__global const store_t *z, ulong c) {
  const ulong cv = c - c % CLXENT_VEC;
  floatv mv = (floatv)(-INFINITY);
  for (ulong j = 0; j < cv; j += CLXENT_VEC) {
    const floatv v = LOADV(z, j);
    mv = v > mv ? v : mv;
  }
  float m = hmax(mv);
  for (ulong j = cv; j < c; ++j) m = fmax(m, LOAD(z, j));
  return m;
}
