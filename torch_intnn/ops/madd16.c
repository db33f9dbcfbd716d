/* Exact integer GEMM on AVX2's vpmaddwd, for operands whose values fit int16.

   C (M, N) = A (M, K) @ B (K, N), C row-major int32 or int64, A and B read through element strides as int8,
   uint8, int16 or int32 (the caller guarantees that every value fits int16).

   vpmaddwd multiplies 16 pairs of int16 and adds each two neighbouring products into an int32 lane. B is packed
   so that a lane's two neighbours are rows k and k+1 of one column, and A's (k, k+1) pair of one row is
   broadcast to all lanes: one instruction adds two terms of eight columns' sums. K is cut into blocks of `kc`
   values (even), and the caller chooses kc so that every block's partial sum provably fits int32 (at least two
   products, so no pair sum overflows); each block's int32 sums are then added into C, in int32 when the whole
   sum fits it, else in int64. Integer addition is associative, so the result equals int64 arithmetic exactly,
   whatever the blocking and the thread split.

   Blocking (GotoBLAS): a 6 x 16 register tile (12 accumulators), B packed per K block into 16-column panels
   (one panel of 256 pairs is 16 KiB, in L1 across the rows), A packed per block of MC rows (96 KiB, in L2).
   Threads split the larger of M and N; each packs its own operands. */

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MR 6
#define NR 16
#define MC 96
#define KC_MAX 512

enum { T_INT8 = 1, T_UINT8 = 2, T_INT16 = 3, T_INT32 = 4 };

typedef struct {
    const void *data;
    int type;
    int64_t rs, cs; /* element strides of rows and columns */
} operand;

/* One row of an operand from column c0, n values, as int16 (n <= KC_MAX). Typed loops: the compiler vectorises
   the contiguous case. */
static void get_row(const operand *o, int64_t r, int64_t c0, int64_t n, int16_t *out) {
    int64_t i0 = r * o->rs + c0 * o->cs, s = o->cs;
    switch (o->type) {
    case T_INT8: { const int8_t *p = (const int8_t *)o->data + i0;
        if (s == 1) for (int64_t j = 0; j < n; j++) out[j] = p[j]; else for (int64_t j = 0; j < n; j++) out[j] = p[j * s];
        break; }
    case T_UINT8: { const uint8_t *p = (const uint8_t *)o->data + i0;
        if (s == 1) for (int64_t j = 0; j < n; j++) out[j] = p[j]; else for (int64_t j = 0; j < n; j++) out[j] = p[j * s];
        break; }
    case T_INT16: { const int16_t *p = (const int16_t *)o->data + i0;
        if (s == 1) for (int64_t j = 0; j < n; j++) out[j] = p[j]; else for (int64_t j = 0; j < n; j++) out[j] = p[j * s];
        break; }
    default: { const int32_t *p = (const int32_t *)o->data + i0;
        if (s == 1) for (int64_t j = 0; j < n; j++) out[j] = (int16_t)p[j]; else for (int64_t j = 0; j < n; j++) out[j] = (int16_t)p[j * s];
        break; }
    }
}

/* A rows [r0, r0 + mb) x columns [k0, k0 + kb) into panels of MR rows: for pair p of panel q, MR int32 words,
   each (a[r][k0 + 2p], a[r][k0 + 2p + 1]) as two int16 (low half first). Missing rows and values are zero. */
static void pack_a(const operand *a, int64_t r0, int64_t mb, int64_t k0, int64_t kb, int32_t *out) {
    int64_t pairs = (kb + 1) / 2;
    static _Thread_local int16_t rows[MR][KC_MAX + 2];
    for (int64_t q = 0; q * MR < mb; q++) {
        int32_t *panel = out + q * pairs * MR;
        for (int r = 0; r < MR; r++) {
            if (q * MR + r < mb) {
                get_row(a, r0 + q * MR + r, k0, kb, rows[r]);
                rows[r][kb] = 0;
            } else {
                memset(rows[r], 0, sizeof(int16_t) * (size_t)(kb + 1));
            }
        }
        for (int64_t p = 0; p < pairs; p++)
            for (int r = 0; r < MR; r++)
                memcpy(panel + p * MR + r, rows[r] + 2 * p, sizeof(int32_t)); /* the pair, low half first */
    }
}

#define CB 128 /* columns of B read per pass when packing: a column-major B's lines stay in L1 across rows */

/* B rows [k0, k0 + kb) x columns [c0, c0 + nb) into panels of NR columns: for pair p of panel q, 32 int16, the
   first 16 for columns 0-7 of the panel and the next 16 for columns 8-15, each column as (b[k0 + 2p][c],
   b[k0 + 2p + 1][c]): rows 2p and 2p + 1 interleaved. Missing columns and rows are zero. */
static void pack_b(const operand *b, int64_t k0, int64_t kb, int64_t c0, int64_t nb, int16_t *out) {
    int64_t pairs = (kb + 1) / 2;
    if (b->rs == 1 && b->cs != 1) { /* column-major (a weight's transpose): read each column along K */
        static _Thread_local int16_t col[KC_MAX + 2];
        const operand t = {b->data, b->type, b->cs, b->rs};
        int64_t panels = (nb + NR - 1) / NR;
        for (int64_t q = 0; q < panels; q++) {
            int16_t *panel = out + q * pairs * 2 * NR;
            for (int64_t lane = 0; lane < NR; lane++) {
                int16_t *dst = panel + (lane / 8) * 16 + (lane % 8) * 2;
                if (q * NR + lane < nb) {
                    get_row(&t, c0 + q * NR + lane, k0, kb, col);
                    col[kb] = 0;
                } else {
                    memset(col, 0, sizeof(int16_t) * (size_t)(kb + 1));
                }
                for (int64_t p = 0; p < pairs; p++) {
                    dst[p * 2 * NR] = col[2 * p];
                    dst[p * 2 * NR + 1] = col[2 * p + 1];
                }
            }
        }
        return;
    }
    static _Thread_local int16_t even[CB] __attribute__((aligned(32))), odd[CB] __attribute__((aligned(32)));
    for (int64_t cb = 0; cb < nb; cb += CB) {
        int64_t n = nb - cb < CB ? nb - cb : CB, width = (n + NR - 1) / NR * NR;
        for (int64_t p = 0; p < pairs; p++) {
            get_row(b, k0 + 2 * p, c0 + cb, n, even);
            if (2 * p + 1 < kb) get_row(b, k0 + 2 * p + 1, c0 + cb, n, odd);
            else memset(odd, 0, sizeof(int16_t) * (size_t)n);
            for (int64_t j = n; j < width; j++) even[j] = odd[j] = 0;
            for (int64_t c = 0; c < width; c += NR) {
                __m128i e0 = _mm_load_si128((const __m128i *)(even + c)), e1 = _mm_load_si128((const __m128i *)(even + c + 8));
                __m128i o0 = _mm_load_si128((const __m128i *)(odd + c)), o1 = _mm_load_si128((const __m128i *)(odd + c + 8));
                __m128i *dst = (__m128i *)(out + (((cb + c) / NR) * pairs + p) * 2 * NR);
                _mm_storeu_si128(dst + 0, _mm_unpacklo_epi16(e0, o0));
                _mm_storeu_si128(dst + 1, _mm_unpackhi_epi16(e0, o0));
                _mm_storeu_si128(dst + 2, _mm_unpacklo_epi16(e1, o1));
                _mm_storeu_si128(dst + 3, _mm_unpackhi_epi16(e1, o1));
            }
        }
    }
}

/* The MR x NR tile of a panel pair over `pairs` pairs, into tile[MR][NR]. */
static void kernel(const int32_t *ap, const int16_t *bp, int64_t pairs, int32_t *tile) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t p = 0; p < pairs; p++) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(bp + 32 * p));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(bp + 32 * p + 16));
        const int32_t *a = ap + MR * p;
        __m256i x;
        x = _mm256_set1_epi32(a[0]);
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(x, b0)); c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(x, b1));
        x = _mm256_set1_epi32(a[1]);
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(x, b0)); c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(x, b1));
        x = _mm256_set1_epi32(a[2]);
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(x, b0)); c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(x, b1));
        x = _mm256_set1_epi32(a[3]);
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(x, b0)); c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(x, b1));
        x = _mm256_set1_epi32(a[4]);
        c40 = _mm256_add_epi32(c40, _mm256_madd_epi16(x, b0)); c41 = _mm256_add_epi32(c41, _mm256_madd_epi16(x, b1));
        x = _mm256_set1_epi32(a[5]);
        c50 = _mm256_add_epi32(c50, _mm256_madd_epi16(x, b0)); c51 = _mm256_add_epi32(c51, _mm256_madd_epi16(x, b1));
    }
    __m256i *t = (__m256i *)tile;
    _mm256_storeu_si256(t + 0, c00); _mm256_storeu_si256(t + 1, c01);
    _mm256_storeu_si256(t + 2, c10); _mm256_storeu_si256(t + 3, c11);
    _mm256_storeu_si256(t + 4, c20); _mm256_storeu_si256(t + 5, c21);
    _mm256_storeu_si256(t + 6, c30); _mm256_storeu_si256(t + 7, c31);
    _mm256_storeu_si256(t + 8, c40); _mm256_storeu_si256(t + 9, c41);
    _mm256_storeu_si256(t + 10, c50); _mm256_storeu_si256(t + 11, c51);
}

typedef struct {
    operand a, b;
    void *c;
    int wide;
    int64_t ldc, k, kc;
    int64_t m0, m1, n0, n1; /* this thread's block of C */
    int status;
} job;

/* A thread's packing buffers, kept between calls: fresh pages cost more than a small product (their faults). */
static _Thread_local struct { void *p; size_t size; } buffers[2];

static void *buffer(int i, size_t size) {
    size = (size + 63) / 64 * 64;
    if (buffers[i].size < size) {
        free(buffers[i].p);
        buffers[i].p = aligned_alloc(64, size);
        buffers[i].size = buffers[i].p ? size : 0;
    }
    return buffers[i].p;
}

static void release(void) {
    for (int i = 0; i < 2; i++) {
        free(buffers[i].p);
        buffers[i].p = NULL;
        buffers[i].size = 0;
    }
}

static void *run(void *arg) {
    job *j = (job *)arg;
    int64_t nb = j->n1 - j->n0, kc = j->k < j->kc ? j->k + j->k % 2 : j->kc;
    int64_t pairs_max = (kc + 1) / 2, panels = (nb + NR - 1) / NR;
    int64_t rows = j->m1 - j->m0 < MC ? j->m1 - j->m0 : MC;
    int32_t *ap = buffer(0, (size_t)((rows + MR - 1) / MR * MR * pairs_max * 4));
    int16_t *bp = buffer(1, (size_t)(panels * pairs_max * 2 * NR * 2));
    if (!ap || !bp) {
        j->status = -1;
        return NULL;
    }
    int32_t tile[MR * NR];
    for (int64_t k0 = 0; k0 < j->k; k0 += kc) {
        int64_t kb = j->k - k0 < kc ? j->k - k0 : kc, pairs = (kb + 1) / 2;
        pack_b(&j->b, k0, kb, j->n0, nb, bp);
        for (int64_t i0 = j->m0; i0 < j->m1; i0 += MC) {
            int64_t mb = j->m1 - i0 < MC ? j->m1 - i0 : MC;
            pack_a(&j->a, i0, mb, k0, kb, ap);
            for (int64_t q = 0; q < panels; q++) {
                int64_t c0 = j->n0 + q * NR, nr = j->n1 - c0 < NR ? j->n1 - c0 : NR;
                for (int64_t s = 0; s * MR < mb; s++) {
                    int64_t r0 = i0 + s * MR, mr = i0 + mb - r0 < MR ? i0 + mb - r0 : MR;
                    kernel(ap + s * pairs * MR, bp + q * pairs * 2 * NR, pairs, tile);
                    for (int64_t r = 0; r < mr; r++) {
                        const int32_t *t = tile + r * NR;
                        if (j->wide) {
                            int64_t *out = (int64_t *)j->c + (r0 + r) * j->ldc + c0;
                            if (k0 == 0) for (int64_t c = 0; c < nr; c++) out[c] = t[c];
                            else for (int64_t c = 0; c < nr; c++) out[c] += t[c];
                        } else {
                            /* the whole sum fits int32 (the caller's bound); add modulo 2**32 */
                            uint32_t *out = (uint32_t *)j->c + (r0 + r) * j->ldc + c0;
                            if (k0 == 0) for (int64_t c = 0; c < nr; c++) out[c] = (uint32_t)t[c];
                            else for (int64_t c = 0; c < nr; c++) out[c] += (uint32_t)t[c];
                        }
                    }
                }
            }
        }
    }
    j->status = 0;
    return NULL;
}

static void *run_and_release(void *arg) {
    run(arg);
    release(); /* a worker thread ends here; its buffers would leak */
    return NULL;
}

/* Returns 0, or -1 if memory ran out or a thread could not start. `kc` is even, at least 2. */
int intnn_madd16_gemm(const void *a, int a_type, int64_t a_rs, int64_t a_cs,
                      const void *b, int b_type, int64_t b_rs, int64_t b_cs,
                      void *c, int wide, int64_t m, int64_t k, int64_t n, int64_t kc, int threads) {
    if (kc > KC_MAX) kc = KC_MAX;
    if (kc < 2 || kc % 2) return -2;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    job jobs[64];
    pthread_t ids[64];
    int split_m = m >= n;
    int64_t size = split_m ? m : n, unit = split_m ? MR : NR;
    int64_t units = (size + unit - 1) / unit;
    if (threads > units) threads = (int)units;
    for (int t = 0; t < threads; t++) {
        int64_t lo = units * t / threads * unit, hi = units * (t + 1) / threads * unit;
        if (hi > size) hi = size;
        job j = {{a, a_type, a_rs, a_cs}, {b, b_type, b_rs, b_cs}, c, wide, n, k, kc,
                 split_m ? lo : 0, split_m ? hi : m, split_m ? 0 : lo, split_m ? n : hi, -1};
        jobs[t] = j;
    }
    int started = 0, status = 0;
    for (int t = 1; t < threads; t++, started++)
        if (pthread_create(&ids[t], NULL, run_and_release, &jobs[t])) break;
    run(&jobs[0]);
    for (int t = 1; t <= started; t++) pthread_join(ids[t], NULL);
    for (int t = 0; t < threads; t++)
        if (jobs[t].status) status = -1;
    return status;
}
