/* Fused CPU passes for the SAM decoder; engine/segment/sam/kernels.py builds, loads and wraps it.
 *
 * Each function replaces a chain of torch elementwise ops, each of which streams the
 * whole array through memory: here every element is read and written once. Built with
 * -O3 -march=native -ffast-math so the loops vectorise. All arrays are contiguous
 * float32. Results equal the torch chains to float32 rounding (tests/engine/segment/sam/test_kernels.py).
 */
#include <math.h>
#include <stdint.h>

/* erf for float32 as a rational polynomial on [-4, 4] (Eigen's generic_fast_erf_float;
 * |error| < 4e-7 against libm's erf, no branches, so it vectorises). */
static inline float erf_f32(float x) {
    x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    const float x2 = x * x;
    float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
    p = x2 * p + -2.10102402082508e-06f;
    p = x2 * p + -5.69250639462346e-05f;
    p = x2 * p + -7.34990630326855e-04f;
    p = x2 * p + -2.95459980854025e-03f;
    p = x2 * p + -1.60960333262415e-02f;
    float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
    q = x2 * q + -1.68282697438203e-03f;
    q = x2 * q + -7.37332916720468e-03f;
    q = x2 * q + -1.42647390514189e-02f;
    return x * p / q;
}

/* The mask upscaling between its two transposed convolutions, for `tokens` image tokens
 * of `groups` sub-pixels x c channels each:
 *   v = y + alpha[i] * us[i] + b1        (us, alpha may be NULL: v = y + b1)
 *   out[i * groups + g] = GELU(LayerNorm_c(v[i, g]) * w + b)    (exact, erf GELU)  */
void de_upscale_norm_gelu(const float *y, const float *us, const float *alpha, const float *b1,
                          const float *w, const float *b, float eps, float *out, int64_t tokens,
                          int64_t groups, int64_t c) {
    const float inv_c = 1.0f / (float)c;
    const int64_t width = groups * c;
    float v[4096];
    for (int64_t i = 0; i < tokens; ++i) {
        const float *yi = y + i * width;
        const float a = alpha ? alpha[i] : 0.0f;
        const float *ui = us ? us + i * width : b1; /* any valid row when us is NULL */
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) v[j] = yi[j] + a * ui[j] + b1[j];
        for (int64_t g = 0; g < groups; ++g) {
            const float *row = v + g * c;
            float *orow = out + (i * groups + g) * c;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < c; ++j) s += row[j];
            const float mean = s * inv_c;
            float var = 0.0f;
#pragma omp simd reduction(+ : var)
            for (int64_t j = 0; j < c; ++j) {
                const float d = row[j] - mean;
                var += d * d;
            }
            const float r = 1.0f / sqrtf(var * inv_c + eps);
#pragma omp simd
            for (int64_t j = 0; j < c; ++j) {
                const float x = (row[j] - mean) * r * w[j] + b[j];
                orow[j] = 0.5f * x * (1.0f + erf_f32(x * 0.70710678118654752f));
            }
        }
    }
}

/* In place softmax over the middle axis of an outer x t x n array, n in blocks that stay
 * in L1: the max, the exponentials and their sum, then the scaling, in one sweep. */
void de_softmax_mid(float *s, int64_t outer, int64_t t, int64_t n) {
    enum { BLOCK = 512 };
    float m[BLOCK], z[BLOCK];
    for (int64_t o = 0; o < outer; ++o) {
        float *base = s + o * t * n;
        for (int64_t k0 = 0; k0 < n; k0 += BLOCK) {
            const int64_t len = (n - k0 < BLOCK) ? n - k0 : BLOCK;
            float *first = base + k0;
#pragma omp simd
            for (int64_t k = 0; k < len; ++k) {
                m[k] = first[k];
                z[k] = 0.0f;
            }
            for (int64_t j = 1; j < t; ++j) {
                const float *row = first + j * n;
#pragma omp simd
                for (int64_t k = 0; k < len; ++k) m[k] = row[k] > m[k] ? row[k] : m[k];
            }
            for (int64_t j = 0; j < t; ++j) {
                float *row = first + j * n;
#pragma omp simd
                for (int64_t k = 0; k < len; ++k) {
                    const float e = expf(row[k] - m[k]);
                    row[k] = e;
                    z[k] += e;
                }
            }
#pragma omp simd
            for (int64_t k = 0; k < len; ++k) z[k] = 1.0f / z[k];
            for (int64_t j = 0; j < t; ++j) {
                float *row = first + j * n;
#pragma omp simd
                for (int64_t k = 0; k < len; ++k) row[k] *= z[k];
            }
        }
    }
}
