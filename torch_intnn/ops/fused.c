/* Fused element-wise integer kernels: one pass over memory where the PyTorch formulation of the same result takes
   several (each with its own temporaries), and no integer division, which PyTorch runs at tens of cycles an
   element on CPU. Plain C that the compiler vectorises; ops/fused.py says what each computes and which PyTorch
   formula it equals bit for bit (the tests compare them on every input value or on random and extreme values).

   Every kernel reads and writes flat arrays in memory order (the caller passes dense tensors and outputs of the
   same strides), except the pooling kernel, which reads NHWC memory. */

#include <stdint.h>

/* out[i] = clamp(T(z[i] / d), -127, 127) for 0 < d and 127 * d < 2**32 (T: truncation toward zero).

   The magnitude floor(|z| / d) clamped to 127 is the largest q in [0, 127] with q * d <= |z|: seven steps of a
   binary search on q's bits, each a product q * d < 2**32 and a comparison, all in uint32 once |z| is clamped to
   127 * d (which changes no result). The sign is put back at the end: T(-a / d) = -T(a / d). */
#define DIV_SAT8_BODY(MAG)                                                    \
    uint32_t a = (MAG) > top ? top : (uint32_t)(MAG), q = 0;                  \
    q = (q + 64) * d <= a ? q + 64 : q;                                       \
    q = (q + 32) * d <= a ? q + 32 : q;                                       \
    q = (q + 16) * d <= a ? q + 16 : q;                                       \
    q = (q + 8) * d <= a ? q + 8 : q;                                         \
    q = (q + 4) * d <= a ? q + 4 : q;                                         \
    q = (q + 2) * d <= a ? q + 2 : q;                                         \
    q = (q + 1) * d <= a ? q + 1 : q;

void intnn_div_sat8_i32(const int32_t *restrict z, int8_t *restrict out, int64_t n, uint32_t d) {
    const uint32_t top = 127u * d;
    for (int64_t i = 0; i < n; i++) {
        int32_t v = z[i];
        uint32_t mag = v < 0 ? 0u - (uint32_t)v : (uint32_t)v; /* |INT32_MIN| = 2**31 in uint32 */
        DIV_SAT8_BODY(mag)
        out[i] = (int8_t)(v < 0 ? -(int32_t)q : (int32_t)q);
    }
}

void intnn_div_sat8_i64(const int64_t *restrict z, int8_t *restrict out, int64_t n, uint32_t d) {
    const uint32_t top = 127u * d;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = z[i];
        uint64_t mag = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
        DIV_SAT8_BODY(mag)
        out[i] = (int8_t)(v < 0 ? -(int32_t)q : (int32_t)q);
    }
}

/* out[i] = table[s[i] + 128]: any function of an int8, tabulated once. */
void intnn_lookup8(const int8_t *restrict s, int8_t *restrict out, int64_t n, const int8_t *restrict table) {
    for (int64_t i = 0; i < n; i++)
        out[i] = table[(int32_t)s[i] + 128];
}

/* Non-overlapping max pooling of int8 NHWC memory x (n, h, w, c) with a kh x kw window (kh * kw <= 256), ceil
   mode (windows that cross the border use the cells inside it): values (n, ho, wo, c) and, for each, the NHWC
   offset in x of the window's first maximum (row-major window order, strict comparison: the first maximum wins
   ties); positions may be NULL. LANES channels at a time in vector registers (GCC's vector extension), the
   window's cells inside, so the running maxima and the cells they came from never leave the registers. */
#define LANES 32
typedef int8_t lanes8 __attribute__((vector_size(LANES)));

static void pool_lanes(const int8_t *x, const int64_t *base, int64_t cells, int64_t k0, int8_t *values,
                       int64_t *positions, const int32_t *offset) {
    lanes8 best, cand, cell = {0};
    __builtin_memcpy(&best, x + base[0] + k0, LANES);
    for (int64_t t = 1; t < cells; t++) {
        __builtin_memcpy(&cand, x + base[t] + k0, LANES);
        lanes8 better = cand > best, tag = (lanes8){0} + (int8_t)t; /* -1 where the candidate is larger */
        best = (cand & better) | (best & ~better);
        cell = (tag & better) | (cell & ~better);
    }
    __builtin_memcpy(values + k0, &best, LANES);
    if (positions)
        for (int k = 0; k < LANES; k++)
        positions[k0 + k] = base[0] + k0 + k + offset[(uint8_t)cell[k]];
}

void intnn_max_pool8(const int8_t *restrict x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                     int8_t *restrict values, int64_t *restrict positions) {
    int64_t ho = (h + kh - 1) / kh, wo = (w + kw - 1) / kw, base[256];
    int32_t offset[256]; /* of each cell from the window's first (< kh * w * c: fits int32, the caller checks) */
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < ho; i++)
            for (int64_t j = 0; j < wo; j++) {
                int64_t cells = 0, o = ((b * ho + i) * wo + j) * c, k0 = 0;
                for (int64_t r = i * kh; r < i * kh + kh && r < h; r++)
                    for (int64_t q = j * kw; q < j * kw + kw && q < w; q++) {
                        base[cells] = ((b * h + r) * w + q) * c;
                        offset[cells] = (int32_t)(base[cells] - base[0]);
                        cells++;
                    }
                for (; k0 + LANES <= c; k0 += LANES)
                    pool_lanes(x, base, cells, k0, values + o, positions ? positions + o : 0, offset);
                for (; k0 < c; k0++) { /* the channels left over */
                    int8_t best = x[base[0] + k0];
                    int32_t at = 0;
                    for (int64_t t = 1; t < cells; t++)
                        if (x[base[t] + k0] > best) {
                            best = x[base[t] + k0];
                            at = offset[t];
                        }
                    values[o + k0] = best;
                    if (positions)
                        positions[o + k0] = base[0] + k0 + at;
                }
            }
}

/* The two int8 limbs of int16 values (ops/limbs.py): lo = (v & 255) - 128 and hi = v >> 8 (floor), so that
   v = 256 * hi + lo + 128. x is (rows, cols) row-major; limb l of x[r][c] goes to stack[r * ld + l * plane + c],
   and with tail > 0 a 1 then tail - 1 zeros to stack[r * ld + 2 * plane ...] (the column of ones beside limbs laid
   side by side, and the padding after it). */
void intnn_split16(const int16_t *restrict x, int64_t rows, int64_t cols, int8_t *restrict stack, int64_t ld,
                   int64_t plane, int64_t tail) {
    for (int64_t r = 0; r < rows; r++) {
        const int16_t *src = x + r * cols;
        int8_t *lo = stack + r * ld, *hi = lo + plane;
        for (int64_t c = 0; c < cols; c++) {
            lo[c] = (int8_t)((src[c] & 255) - 128);
            hi[c] = (int8_t)(src[c] >> 8);
        }
        for (int64_t t = 0; t < tail; t++)
            lo[2 * plane + t] = t == 0;
    }
}

/* How many of s[0..n) are -127, 127 or -128: the int8 values that saturated (|s| >= 127). */
int64_t intnn_count_sat8(const int8_t *restrict s, int64_t n) {
    int64_t total = 0;
    for (int64_t i0 = 0; i0 < n; i0 += 1 << 20) { /* int32 partial counts, which vectorise */
        int64_t end = n - i0 < (1 << 20) ? n : i0 + (1 << 20);
        int32_t part = 0;
        for (int64_t i = i0; i < end; i++)
            part += s[i] >= 127 || s[i] <= -127;
        total += part;
    }
    return total;
}

/* The columns of a stride-1 convolution (ops/conv.py, im2col) of NHWC memory x (n, h, w, c), elements of `size`
   bytes: row (b, i, j) of the (n * ho * wo, kh * kw * c) result holds, for each tap (r, q) in row-major order, the
   c values of x at (i + r - ph, j + q - pw), zeros where that lies in the padding. */
void intnn_im2col(const uint8_t *restrict x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t size, int64_t kh,
                  int64_t kw, int64_t ph, int64_t pw, uint8_t *restrict out) {
    int64_t ho = h + 2 * ph - kh + 1, wo = w + 2 * pw - kw + 1, line = c * size;
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < ho; i++)
            for (int64_t j = 0; j < wo; j++)
                for (int64_t r = 0; r < kh; r++) {
                    int64_t row = i + r - ph;
                    for (int64_t q = 0; q < kw; q++, out += line) {
                        int64_t col = j + q - pw;
                        if (row < 0 || row >= h || col < 0 || col >= w)
                            __builtin_memset(out, 0, line);
                        else
                            __builtin_memcpy(out, x + ((b * h + row) * w + col) * line, line);
                    }
                }
}

/* NITRO-ReLU's backward (nn/nitro.py): out = 0 where s >= 127, T(g / k) where s < 0, else g. */
void intnn_nitro_relu_grad(const int32_t *restrict g, const int8_t *restrict s, int32_t *restrict out, int64_t n,
                           int32_t k) {
    for (int64_t i = 0; i < n; i++)
        out[i] = s[i] >= 127 ? 0 : s[i] < 0 ? g[i] / k : g[i];
}

/* The limb products' sum of ops/matmul.py (_combine): out[r][c] = row[r] + col[c] + sum over limb pairs (i, j) of
   256**(i + j) * p[i * m + r][j * n + c], for i < na and j < nb, p row-major with ld columns, row and col NULL or
   int64 vectors (the offset terms, already reduced to out's width). Modulo 2**64 (wide) or 2**32, in unsigned
   arithmetic, where wrapping is defined: exact, because the caller proves the true sum fits out's dtype. */
#define COMBINE_BODY(U, T)                                                                              \
    for (int64_t r = 0; r < m; r++) {                                                                   \
        T *o = (T *)out + r * n;                                                                        \
        U base = row ? (U)row[r] : 0;                                                                   \
        for (int64_t c = 0; c < n; c++)                                                                 \
            o[c] = (T)(base + (col ? (U)col[c] : 0) + (U)p[r * ld + c]);                                \
        for (int i = 0; i < na; i++)                                                                    \
            for (int j = 0; j < nb; j++) {                                                              \
                if (!i && !j)                                                                           \
                    continue;                                                                           \
                U coef = (U)1 << (8 * (i + j) < 8 * (int)sizeof(U) ? 8 * (i + j) : 0);                  \
                if (8 * (i + j) >= 8 * (int)sizeof(U))                                                  \
                    continue; /* 256**(i + j) is 0 modulo the width */                                  \
                const int32_t *q = p + (i * m + r) * ld + j * n;                                        \
                for (int64_t c = 0; c < n; c++)                                                         \
                    o[c] = (T)((U)o[c] + coef * (U)q[c]);                                               \
            }                                                                                           \
    }

void intnn_combine(const int32_t *restrict p, int64_t ld, int64_t m, int64_t n, int na, int nb,
                   const int64_t *restrict row, const int64_t *restrict col, void *restrict out, int wide) {
    if (wide)
        COMBINE_BODY(uint64_t, int64_t)
    else
        COMBINE_BODY(uint32_t, int32_t)
}
