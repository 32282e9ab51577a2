/*
 * CPU kernel for the per-pixel reductions over the class axis of (B, C, H, W) float32 logits.
 *
 * Why native code: on a CPU, PyTorch needs about eight elementwise kernels per reduction (max,
 * subtract, exp, sum, the argmax keys...), and even banded to stay in cache they cost ~6x more
 * than one pass that reads each logit once from memory and keeps a block of pixels in L1
 * (measured in benchmarks/RESULTS.md). This file is that one pass. ael/core/_native.py loads it
 * with ctypes (no Python headers needed) and ael/core/_channel_ops.py falls back to the torch
 * implementation when it is absent or the input is not a contiguous float32 CPU tensor.
 *
 * Results match the torch path: the maximum and the *first* argmax exactly (as Tensor.max),
 * and sum_c exp(x_c - max) to a few float32 ulps (exp via a degree-6 polynomial of 2^f). A NaN
 * logit makes that pixel's maximum and exp-sum NaN and its argmax 0.
 *
 * The work is split over `threads` POSIX threads by blocks of pixels; there is no OpenMP, so
 * nothing competes with PyTorch's own OpenMP pool between calls.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* Pixels per block: C blocks of this many floats stay in L1 for the exp pass. */
#define BLOCK 128
#define MAX_THREADS 256

/* AVX2 + FMA clone chosen at load time where the CPU has them; the default clone runs anywhere. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CLONES
#endif
#define INLINE static inline __attribute__((always_inline))

/* 2^d for d <= 0 (2^-127 and below flush to 0; NaN stays NaN): 2^round(d) from the exponent
 * bits, times a polynomial for 2^f on [-0.5, 0.5] (relative error 2e-9 before float32 rounding).
 * No NaN is ever converted to an integer (undefined behaviour), and the loops stay branch-free. */
INLINE float exp2_nonpositive(float d) {
    float kept = d < -127.0f ? -127.0f : d; /* NaN stays NaN, and carries through f and p */
    float safe = d > -127.0f ? d : -127.0f; /* NaN becomes -127 here: safe to convert to int */
    float n = rintf(safe);
    float f = kept - n;
    float p = 1.5337577e-4f;
    p = p * f + 1.3399860e-3f;
    p = p * f + 9.6185198e-3f;
    p = p * f + 5.5503290e-2f;
    p = p * f + 2.4022646e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

CLONES static void stats_block(const float *restrict x, int64_t hw, int64_t classes, int64_t n,
                               float *restrict top, int64_t *restrict arg, float *restrict sums) {
    float best[BLOCK], acc[BLOCK];
    int32_t idx[BLOCK], nan[BLOCK];
    for (int64_t p = 0; p < n; p++) {
        float a = x[p];
        best[p] = a;
        idx[p] = 0;
        nan[p] = a != a;
    }
    for (int64_t c = 1; c < classes; c++) {
        const float *xc = x + c * hw;
        for (int64_t p = 0; p < n; p++) {
            float a = xc[p];
            int greater = a > best[p]; /* strict: the first maximum wins ties */
            best[p] = greater ? a : best[p];
            idx[p] = greater ? (int32_t)c : idx[p];
            nan[p] |= a != a;
        }
    }
    if (sums) {
        for (int64_t p = 0; p < n; p++) acc[p] = 0.0f;
        for (int64_t c = 0; c < classes; c++) {
            const float *xc = x + c * hw;
            for (int64_t p = 0; p < n; p++) acc[p] += exp2_nonpositive((xc[p] - best[p]) * 1.44269504088896341f);
        }
        for (int64_t p = 0; p < n; p++) sums[p] = nan[p] ? NAN : acc[p];
    }
    if (top)
        for (int64_t p = 0; p < n; p++) top[p] = nan[p] ? NAN : best[p];
    if (arg)
        for (int64_t p = 0; p < n; p++) arg[p] = nan[p] ? 0 : idx[p];
}

/* The interface version: ael/core/_native.py refuses a build whose version differs from its own
 * (a stale in-place build after an update), so a changed signature can never be called. */
int ael_native_abi(void) { return 4; }

/* ---- work split: blocks of BLOCK pixels of each image, over `threads` POSIX threads ---- */

typedef struct {
    const float *logits;
    const int64_t *target;
    int64_t classes, hw, first_block, end_block;
    float *top, *sums, *picked;
    int64_t *argmax;
} job;

typedef void (*block_fn)(const job *, int64_t image, int64_t first_pixel, int64_t n);

typedef struct {
    job work;
    block_fn fn;
} task;

static void *run_task(void *arg) {
    const task *t = (const task *)arg;
    const job *j = &t->work;
    int64_t per_image = (j->hw + BLOCK - 1) / BLOCK;
    for (int64_t u = j->first_block; u < j->end_block; u++) {
        int64_t p0 = (u % per_image) * BLOCK;
        t->fn(j, u / per_image, p0, j->hw - p0 < BLOCK ? j->hw - p0 : BLOCK);
    }
    return 0;
}

static void parallel_blocks(job work, int64_t batch, block_fn fn, int threads) {
    int64_t blocks = batch * ((work.hw + BLOCK - 1) / BLOCK);
    if (threads > blocks) threads = (int)blocks;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    task tasks[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        tasks[t].work = work;
        tasks[t].work.first_block = blocks * t / threads;
        tasks[t].work.end_block = blocks * (t + 1) / threads;
        tasks[t].fn = fn;
    }
    for (int t = 1; t < threads; t++) {
        started[t] = pthread_create(&ids[t], 0, run_task, &tasks[t]) == 0;
        if (!started[t]) run_task(&tasks[t]); /* no thread to be had: do its share here */
    }
    run_task(&tasks[0]);
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(ids[t], 0);
}

/* ---- channel statistics ---- */

static void stats_of_block(const job *j, int64_t image, int64_t p0, int64_t n) {
    int64_t out = image * j->hw + p0;
    stats_block(j->logits + image * j->classes * j->hw + p0, j->hw, j->classes, n, j->top ? j->top + out : 0,
                j->argmax ? j->argmax + out : 0, j->sums ? j->sums + out : 0);
}

/*
 * Per-pixel maximum (top), first argmax and exp-sum over the classes of contiguous (B, C, HW)
 * float32 logits. `top`, `argmax` and `sums` may each be NULL. Returns 0, or -1 on bad sizes.
 */
int ael_channel_stats(const float *logits, int64_t batch, int64_t classes, int64_t hw, float *top,
                      int64_t *argmax, float *sums, int threads) {
    if (batch < 0 || classes < 1 || hw < 0) return -1;
    job work = {.logits = logits, .classes = classes, .hw = hw, .top = top, .sums = sums, .argmax = argmax};
    parallel_blocks(work, batch, stats_of_block, threads);
    return 0;
}

/* ---- picking one class's logit per pixel ---- */

static void pick_block(const job *j, int64_t image, int64_t p0, int64_t n) {
    const float *x = j->logits + image * j->classes * j->hw + p0;
    const int64_t *target = j->target + image * j->hw + p0;
    float *out = j->picked + image * j->hw + p0;
    for (int64_t p = 0; p < n; p++) {
        int64_t c = target[p];
        out[p] = (uint64_t)c < (uint64_t)j->classes ? x[c * j->hw + p] : NAN; /* never read out of bounds */
    }
}

/*
 * picked[b, p] = logits[b, target[b, p], p] for contiguous (B, C, HW) float32 logits and (B, HW)
 * int64 targets (NaN where a target is outside [0, C)). Returns 0, or -1 on bad sizes.
 */
int ael_pick_class(const float *logits, const int64_t *target, int64_t batch, int64_t classes, int64_t hw,
                   float *picked, int threads) {
    if (batch < 0 || classes < 1 || hw < 0) return -1;
    job work = {.logits = logits, .target = target, .classes = classes, .hw = hw, .picked = picked};
    parallel_blocks(work, batch, pick_block, threads);
    return 0;
}
