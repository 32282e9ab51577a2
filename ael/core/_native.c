/*
 * CPU kernels for the per-pixel work of an AEL step: the reductions over the class axis of
 * (B, C, H, W) float32 logits, picking one class's logit per pixel (raw, as a cross-entropy or
 * as a probability), per-class pixel histograms, the equalization keep mask, the re-weighted
 * pseudo-label loss and its gradient, Copy-Paste, CutMix mixing, and the bounding box of a random large
 * 8-connected component of one class per map.
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
 * The work is split by blocks of pixels over the team of the OpenMP runtime PyTorch already
 * runs on (found at load time, see ael_use_openmp), or over POSIX threads where there is none.
 * Nothing here links an OpenMP runtime of its own.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Pixels per block: C blocks of this many floats stay in L1 for the exp pass. */
#ifndef BLOCK
#define BLOCK 128
#endif
#define MAX_THREADS 256

/* AVX2 + FMA clone chosen at load time where the CPU has them; the default clone runs anywhere. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CLONES
#endif
#define INLINE static inline __attribute__((always_inline))

/* 2^d for d <= 0 (the only range the reductions and probabilities need) (2^-127 and below flush to 0; NaN stays NaN): 2^round(d) from the exponent
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

/* exp(min(x - lse, 0)): the softmax probability of logit x given the log-sum-exp of its pixel.
 * x - lse <= 0 for a true log-sum-exp; a caller's smaller offset counts as equal (probability 1),
 * and NaN stays NaN. */
INLINE float softmax_of(float x, float lse) {
    float d = x - lse;
    return exp2_nonpositive((d < 0.0f ? d : (d == d ? 0.0f : d)) * 1.44269504088896341f);
}

/* log(s) for the exp-sums here (s >= 1, or NaN, or +inf, which pass through): the exponent
 * from the bits, times log(2), plus log(m) for the mantissa m in [sqrt(1/2), sqrt(2)) from the
 * series 2 atanh(t), t = (m - 1) / (m + 1) (|t| <= 0.172, five terms: relative error below
 * 1e-9 before float32 rounding). Branch-free, so the loops that call it vectorise (given
 * -fno-trapping-math, see setup.py). */
INLINE float log_of_sum(float s) {
    int32_t bits;
    memcpy(&bits, &s, sizeof bits);
    int32_t exponent = ((bits >> 23) & 0xFF) - 127;
    int32_t mantissa_bits = (bits & 0x7FFFFF) | 0x3F800000;
    float m;
    memcpy(&m, &mantissa_bits, sizeof m);
    int32_t big = m > 1.41421356f;
    m *= big ? 0.5f : 1.0f;
    float e = (float)(exponent + big);
    float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    float series = 1.0f / 9.0f;
    series = series * t2 + 1.0f / 7.0f;
    series = series * t2 + 1.0f / 5.0f;
    series = series * t2 + 1.0f / 3.0f;
    series = series * t2 + 1.0f;
    float log_m = 2.0f * t * series;
    float result = e * 0.693145752f + (e * 1.42860677e-6f + log_m); /* log(2) in two parts */
    return s < INFINITY ? result : s; /* NaN < inf is false: NaN and +inf pass through */
}

typedef struct {
    float *top, *sums, *lse, *max_probability;
    int64_t *argmax;
} stats_outputs;

CLONES static void stats_block(const float *restrict x, int64_t hw, int64_t classes, int64_t n,
                               const stats_outputs *out, int64_t at) {
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
            /* Unconditional stores of bit-selected values: a conditional store would compile to
             * a masked store behind a data-dependent branch, mispredicted on noisy logits. */
            float a = xc[p], b = best[p];
            int32_t greater = -(int32_t)(a > b); /* strict: the first maximum wins ties */
            best[p] = a > b ? a : b;
            idx[p] = (idx[p] & ~greater) | ((int32_t)c & greater);
            nan[p] |= a != a;
        }
    }
    if (out->sums || out->lse || out->max_probability) {
        for (int64_t p = 0; p < n; p++) acc[p] = 0.0f;
        for (int64_t c = 0; c < classes; c++) {
            const float *xc = x + c * hw;
            for (int64_t p = 0; p < n; p++) acc[p] += exp2_nonpositive((xc[p] - best[p]) * 1.44269504088896341f);
        }
        for (int64_t p = 0; p < n; p++) acc[p] = nan[p] ? NAN : acc[p];
        if (out->sums)
            for (int64_t p = 0; p < n; p++) out->sums[at + p] = acc[p];
        if (out->lse) {
            float *lse = out->lse + at;
            for (int64_t p = 0; p < n; p++) lse[p] = best[p] + log_of_sum(acc[p]);
        }
        if (out->max_probability)
            for (int64_t p = 0; p < n; p++) out->max_probability[at + p] = 1.0f / acc[p];
    }
    if (out->top)
        for (int64_t p = 0; p < n; p++) out->top[at + p] = nan[p] ? NAN : best[p];
    if (out->argmax)
        for (int64_t p = 0; p < n; p++) out->argmax[at + p] = nan[p] ? 0 : idx[p];
}

/* The interface version: ael/core/_native.py refuses a build whose version differs from its own
 * (a stale in-place build after an update), so a changed signature can never be called. */
int ael_native_abi(void) { return 12; }

/* ---- work split: a range of items over `threads` threads ---- */

typedef void (*range_fn)(void *ctx, int thread, int64_t begin, int64_t end);

typedef struct {
    void *ctx;
    range_fn fn;
    int thread;
    int64_t begin, end;
} chunk;

static void *run_chunk(void *arg) {
    const chunk *c = (const chunk *)arg;
    c->fn(c->ctx, c->thread, c->begin, c->end);
    return 0;
}

/*
 * The OpenMP runtime PyTorch runs on, when ael/core/_native.py finds one (ael_use_openmp). After
 * each of its parallel operations PyTorch's OpenMP workers keep spinning for a few milliseconds
 * (libgomp's GOMP_SPINCOUNT); threads of our own would then share the cores with them, which
 * doubled the time of these kernels inside a training step (16 instead of 8 ms per map). Work
 * handed to that runtime's own team runs on the spinning workers instead.
 */
typedef void (*omp_parallel_fn)(void (*fn)(void *), void *data, unsigned threads, unsigned flags);
typedef int (*omp_int_fn)(void);
typedef struct {
    omp_parallel_fn parallel;
    omp_int_fn thread_num, team_size;
} omp_runtime;

/* The runtime's entry points are written once (the first ael_use_openmp that gives them) and
 * never change; switching OpenMP on and off swaps one pointer to them atomically, so a kernel
 * running in another thread always sees all three or none. */
static omp_runtime registered_runtime;
static int runtime_registered = 0;
static const omp_runtime *active_runtime = 0;
static pthread_mutex_t runtime_lock = PTHREAD_MUTEX_INITIALIZER;

/* Use GOMP_parallel, omp_get_thread_num and omp_get_num_threads of a loaded OpenMP runtime for
 * the work split (all three NULL: back to POSIX threads). Returns 0, or -1 when only some are
 * given or when they differ from those of a runtime registered before. */
int ael_use_openmp(void *parallel, void *thread_num, void *team_size) {
    if (!parallel != !thread_num || !parallel != !team_size) return -1;
    if (!parallel) {
        __atomic_store_n(&active_runtime, (const omp_runtime *)0, __ATOMIC_RELEASE);
        return 0;
    }
    int code = 0;
    pthread_mutex_lock(&runtime_lock);
    if (!runtime_registered) {
        registered_runtime = (omp_runtime){.parallel = (omp_parallel_fn)parallel,
                                           .thread_num = (omp_int_fn)thread_num, .team_size = (omp_int_fn)team_size};
        runtime_registered = 1;
    } else if (registered_runtime.parallel != (omp_parallel_fn)parallel ||
               registered_runtime.thread_num != (omp_int_fn)thread_num ||
               registered_runtime.team_size != (omp_int_fn)team_size) {
        code = -1;
    }
    if (code == 0) __atomic_store_n(&active_runtime, (const omp_runtime *)&registered_runtime, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&runtime_lock);
    return code;
}

typedef struct {
    const omp_runtime *runtime;
    chunk *chunks;
    int count;
} team_work;

/* One member of an OpenMP team: its chunks (a runtime may give a smaller team than asked for). */
static void run_team_member(void *arg) {
    const team_work *w = (const team_work *)arg;
    int size = w->runtime->team_size();
    for (int t = w->runtime->thread_num(); t < w->count; t += size > 0 ? size : w->count) run_chunk(&w->chunks[t]);
}

/* Threads that parallel_range uses for `items` items (what per-thread partial results need). */
static int threads_for(int64_t items, int threads) {
    if (threads > items) threads = (int)items;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    return threads < 1 ? 1 : threads;
}

/* fn(ctx, t, begin, end) over contiguous shares of [0, items), share t of threads_for(...). */
static void parallel_range(int64_t items, range_fn fn, void *ctx, int threads) {
    threads = threads_for(items, threads);
    chunk chunks[MAX_THREADS];
    for (int t = 0; t < threads; t++)
        chunks[t] = (chunk){.ctx = ctx, .fn = fn, .thread = t, .begin = items * t / threads,
                            .end = items * (t + 1) / threads};
    if (threads == 1) {
        run_chunk(&chunks[0]);
        return;
    }
    const omp_runtime *runtime = __atomic_load_n(&active_runtime, __ATOMIC_ACQUIRE);
    if (runtime) {
        team_work w = {.runtime = runtime, .chunks = chunks, .count = threads};
        runtime->parallel(run_team_member, &w, (unsigned)threads, 0);
        return;
    }
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 1; t < threads; t++) {
        started[t] = pthread_create(&ids[t], 0, run_chunk, &chunks[t]) == 0;
        if (!started[t]) run_chunk(&chunks[t]); /* no thread to be had: do its share here */
    }
    run_chunk(&chunks[0]);
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(ids[t], 0);
}

/* Per-pixel work goes by blocks of BLOCK pixels of one image: block u is pixels
 * [(u % per_image) * BLOCK, ...) of image u / per_image. */
typedef void (*block_fn)(void *ctx, int thread, int64_t image, int64_t first_pixel, int64_t n);

typedef struct {
    void *ctx;
    block_fn fn;
    int64_t hw;
} blocks;

static void run_blocks(void *arg, int thread, int64_t begin, int64_t end) {
    const blocks *b = (const blocks *)arg;
    int64_t per_image = (b->hw + BLOCK - 1) / BLOCK;
    for (int64_t u = begin; u < end; u++) {
        int64_t p0 = (u % per_image) * BLOCK;
        b->fn(b->ctx, thread, u / per_image, p0, b->hw - p0 < BLOCK ? b->hw - p0 : BLOCK);
    }
}

static int64_t block_count(int64_t batch, int64_t hw) { return batch * ((hw + BLOCK - 1) / BLOCK); }

static void parallel_blocks(int64_t batch, int64_t hw, block_fn fn, void *ctx, int threads) {
    blocks b = {.ctx = ctx, .fn = fn, .hw = hw};
    parallel_range(block_count(batch, hw), run_blocks, &b, threads);
}

/* Work that accumulates (histograms, loss sums) goes by SHARDS fixed runs of consecutive blocks,
 * each into its own partial result, merged in shard order: the totals do not depend on the
 * number of threads (floating-point sums included). fn's `thread` argument is the shard. */
#define SHARDS 64

typedef struct {
    void *ctx;
    block_fn fn;
    int64_t hw, blocks;
    int shards;
} sharded;

static void run_shards(void *arg, int thread, int64_t begin, int64_t end) {
    (void)thread;
    const sharded *s = (const sharded *)arg;
    int64_t per_image = (s->hw + BLOCK - 1) / BLOCK;
    for (int64_t shard = begin; shard < end; shard++)
        for (int64_t u = s->blocks * shard / s->shards; u < s->blocks * (shard + 1) / s->shards; u++) {
            int64_t p0 = (u % per_image) * BLOCK;
            s->fn(s->ctx, (int)shard, u / per_image, p0, s->hw - p0 < BLOCK ? s->hw - p0 : BLOCK);
        }
}

/* Elements of partial results all shards together may hold (fewer shards for large ones). */
#define PARTIAL_BUDGET (1 << 18)

/* Shards for (batch, hw) with `partial_size` partial values per shard: from the shape only,
 * so that results never depend on the thread count. */
static int shard_count(int64_t batch, int64_t hw, int64_t partial_size) {
    int64_t shards = block_count(batch, hw);
    int64_t affordable = PARTIAL_BUDGET / (partial_size > 0 ? partial_size : 1);
    if (shards > affordable) shards = affordable;
    if (shards > SHARDS) shards = SHARDS;
    return shards < 1 ? 1 : (int)shards;
}

static void parallel_shards(int64_t batch, int64_t hw, int shards, block_fn fn, void *ctx, int threads) {
    sharded s = {.ctx = ctx, .fn = fn, .hw = hw, .blocks = block_count(batch, hw), .shards = shards};
    parallel_range(s.shards, run_shards, &s, threads);
}

/* ---- channel statistics ---- */

typedef struct {
    const float *logits;
    int64_t classes, hw;
    stats_outputs out;
} stats_job;

static void stats_of_block(void *ctx, int thread, int64_t image, int64_t p0, int64_t n) {
    (void)thread;
    const stats_job *j = (const stats_job *)ctx;
    stats_block(j->logits + image * j->classes * j->hw + p0, j->hw, j->classes, n, &j->out, image * j->hw + p0);
}

/*
 * Per-pixel reductions over the classes of contiguous (B, C, HW) float32 logits, each written
 * where its (B, HW) output is not NULL: the maximum (top), the first argmax (int64), the
 * exp-sum sum_c exp(x_c - top), the log-sum-exp top + log(exp-sum), and the maximum softmax
 * probability 1 / exp-sum. Returns 0, or -1 on bad sizes.
 */
int ael_channel_stats(const float *logits, int64_t batch, int64_t classes, int64_t hw, float *top,
                      int64_t *argmax, float *sums, float *lse, float *max_probability, int threads) {
    if (batch < 0 || classes < 1 || hw < 0) return -1;
    stats_job j = {.logits = logits, .classes = classes, .hw = hw,
                   .out = {.top = top, .sums = sums, .lse = lse, .max_probability = max_probability, .argmax = argmax}};
    parallel_blocks(batch, hw, stats_of_block, &j, threads);
    return 0;
}

/* ---- picking one class's logit per pixel ---- */

enum { PICK_LOGIT = 0, PICK_CROSS_ENTROPY = 1, PICK_PROBABILITY = 2 };

typedef struct {
    const float *logits, *offset;
    const int64_t *target;
    const uint8_t *mask;
    int64_t classes, hw, ignore;
    int mode;
    float fill;
    float *picked;
} pick_job;

CLONES static void pick_block(void *ctx, int thread, int64_t image, int64_t p0, int64_t n) {
    (void)thread;
    const pick_job *j = (const pick_job *)ctx;
    const float *x = j->logits + image * j->classes * j->hw + p0;
    const int64_t *target = j->target + image * j->hw + p0;
    const float *offset = j->offset ? j->offset + image * j->hw + p0 : 0;
    const uint8_t *mask = j->mask ? j->mask + image * j->hw + p0 : 0;
    float *out = j->picked + image * j->hw + p0;
    for (int64_t p = 0; p < n; p++) {
        int64_t c = target[p];
        /* An invalid target reads class 0 (never out of bounds) and gives `fill`. */
        int valid = (uint64_t)c < (uint64_t)j->classes && c != j->ignore && (!mask || mask[p]);
        float v = x[(valid ? c : 0) * j->hw + p];
        if (j->mode == PICK_CROSS_ENTROPY) v = offset[p] - v;
        else if (j->mode == PICK_PROBABILITY) {
            v = softmax_of(v, offset[p]);
        }
        out[p] = valid ? v : j->fill;
    }
}

/*
 * For contiguous (B, C, HW) float32 logits and (B, HW) int64 targets, at every pixel whose target
 * t is valid (in [0, C), not `ignore`, and mask[p] where `mask` (B, HW) uint8 is not NULL):
 *   mode 0: picked = logits[b, t, p]
 *   mode 1: picked = offset[b, p] - logits[b, t, p]          (cross-entropy, offset = logsumexp)
 *   mode 2: picked = exp(min(logits[b, t, p] - offset[b, p], 0))  (softmax probability)
 * and picked = `fill` elsewhere. `offset` (B, HW) float32 is needed by modes 1 and 2.
 * Returns 0, or -1 on bad sizes or arguments.
 */
int ael_pick_class(const float *logits, const int64_t *target, int64_t batch, int64_t classes, int64_t hw,
                   int64_t ignore, const uint8_t *mask, const float *offset, int mode, float fill, float *picked,
                   int threads) {
    if (batch < 0 || classes < 1 || hw < 0 || mode < 0 || mode > 2 || (mode != PICK_LOGIT && !offset)) return -1;
    pick_job j = {.logits = logits, .offset = offset, .target = target, .mask = mask, .classes = classes,
                  .hw = hw, .ignore = ignore, .mode = mode, .fill = fill, .picked = picked};
    parallel_blocks(batch, hw, pick_block, &j, threads);
    return 0;
}

/* ---- equalization sampling: keep a pixel with the rate of its class ---- */

typedef struct {
    const int64_t *pred, *words;
    const float *rates;
    int64_t classes, hw;
    float *kept;
} keep_job;

CLONES static void keep_block(void *ctx, int thread, int64_t image, int64_t p0, int64_t n) {
    (void)thread;
    const keep_job *j = (const keep_job *)ctx;
    int64_t at = image * j->hw + p0;
    const int64_t *pred = j->pred + at;
    float *kept = j->kept + at;
    for (int64_t p = 0; p < n; p++) {
        int64_t c = pred[p];
        c = c < 0 ? 0 : (c >= j->classes ? j->classes - 1 : c); /* clamped, as the PyTorch path */
        int64_t k = at + p;                                       /* uniform k: 24 bits of word k / 2 */
        float u = (float)((j->words[k >> 1] >> (24 * (k & 1))) & 0xFFFFFF) * (1.0f / 16777216.0f);
        kept[p] = u > 1.0f - j->rates[c] ? 1.0f : 0.0f;
    }
}

/*
 * kept[b, p] = 1 where u > 1 - rates[pred[b, p]] (pred clamped to [0, C)), else 0: a pixel
 * predicted as class c is kept with probability rates[c]. The uniform of flat pixel k is
 * bits [24 * (k % 2), 24 * (k % 2) + 24) of words[k / 2], times 2^-24 (two float32 uniforms
 * of torch.rand's resolution per 63-bit random word, a third of the cost of drawing them).
 * pred: contiguous (B, HW) int64; words: ceil(B * HW / 2) int64; rates: (C,) float32;
 * kept: (B, HW) float32. Returns 0, or -1 on bad sizes.
 */
int ael_keep_mask(const int64_t *pred, const float *rates, const int64_t *words, int64_t batch, int64_t hw,
                  int64_t classes, float *kept, int threads) {
    if (batch < 0 || classes < 1 || hw < 0) return -1;
    keep_job j = {.pred = pred, .rates = rates, .words = words, .classes = classes, .hw = hw, .kept = kept};
    parallel_blocks(batch, hw, keep_block, &j, threads);
    return 0;
}

/* ---- mixing: one tensor inside a mask, another outside ---- */

typedef struct {
    const void *outside, *inside;
    const uint8_t *mask;
    int64_t channels, hw, element_size;
    void *out;
} mix_job;

#define MIX_LOOP(type)                                                                      \
    do {                                                                                    \
        const type *o = (const type *)j->outside + base, *i = (const type *)j->inside + base; \
        type *r = (type *)j->out + base;                                                    \
        for (int64_t p = 0; p < n; p++) r[p] = m[p] ? i[p] : o[p];                          \
    } while (0)

CLONES static void mix_block(void *ctx, int thread, int64_t image, int64_t p0, int64_t n) {
    (void)thread;
    const mix_job *j = (const mix_job *)ctx;
    const uint8_t *m = j->mask + image * j->hw + p0;
    for (int64_t ch = 0; ch < j->channels; ch++) {
        int64_t base = (image * j->channels + ch) * j->hw + p0;
        if (j->element_size == 8) MIX_LOOP(uint64_t);
        else if (j->element_size == 4) MIX_LOOP(uint32_t);
        else if (j->element_size == 2) MIX_LOOP(uint16_t);
        else MIX_LOOP(uint8_t);
    }
}

/*
 * out = inside where mask, else outside, bit for bit, for contiguous (B, K, HW) tensors of
 * 1-, 2-, 4- or 8-byte elements and a contiguous (B, HW) uint8 (bool) mask shared by the K
 * channels. Returns 0, or -1 on bad sizes.
 */
int ael_mix(const void *outside, const void *inside, const uint8_t *mask, int64_t batch, int64_t channels,
            int64_t hw, int64_t element_size, void *out, int threads) {
    if (batch < 0 || channels < 0 || hw < 0 || (element_size != 1 && element_size != 2 && element_size != 4 &&
                                                 element_size != 8))
        return -1;
    mix_job j = {.outside = outside, .inside = inside, .mask = mask, .channels = channels, .hw = hw,
                 .element_size = element_size, .out = out};
    parallel_blocks(batch, hw, mix_block, &j, threads);
    return 0;
}

/* ---- per-class histograms ---- */

typedef struct {
    const int64_t *labels;
    const float *values;
    int64_t batch, classes, hw, ignore;
    int64_t *counts; /* (shards, B, C) partial counts */
    double *sums;    /* (shards, B, C) partial sums, or NULL */
} histogram_job;

static void histogram_block(void *ctx, int shard, int64_t image, int64_t p0, int64_t n) {
    const histogram_job *j = (const histogram_job *)ctx;
    const int64_t *labels = j->labels + image * j->hw + p0;
    int64_t at = ((int64_t)shard * j->batch + image) * j->classes;
    int64_t *counts = j->counts + at;
    for (int64_t p = 0; p < n; p++) {
        int64_t c = labels[p];
        if ((uint64_t)c < (uint64_t)j->classes && c != j->ignore) counts[c]++;
    }
    if (j->sums) {
        const float *values = j->values + image * j->hw + p0;
        double *sums = j->sums + at;
        for (int64_t p = 0; p < n; p++) {
            int64_t c = labels[p];
            if ((uint64_t)c < (uint64_t)j->classes && c != j->ignore) sums[c] += values[p];
        }
    }
}

/*
 * counts[b, c] = number of pixels of image b labeled c, and, where `values` (B, HW) float32 and
 * `sums` are not NULL, sums[b, c] = the sum of their values (accumulated in double), over the
 * pixels whose label is in [0, C) and not `ignore`. labels: contiguous (B, HW) int64.
 * Returns 0, -1 on bad sizes, -2 when memory for the partial results is short.
 */
int ael_class_histogram(const int64_t *labels, const float *values, int64_t batch, int64_t hw, int64_t classes,
                        int64_t ignore, int64_t *counts, double *sums, int threads) {
    if (batch < 0 || classes < 1 || hw < 0) return -1;
    int64_t size = batch * classes;
    int shards = shard_count(batch, hw, size);
    histogram_job j = {.labels = labels, .values = sums ? values : 0, .batch = batch, .classes = classes,
                       .hw = hw, .ignore = ignore};
    j.counts = calloc((size_t)(shards * size + 1), sizeof *j.counts);
    j.sums = sums ? calloc((size_t)(shards * size + 1), sizeof *j.sums) : 0;
    if (!j.counts || (sums && !j.sums)) {
        free(j.counts);
        free(j.sums);
        return -2;
    }
    parallel_shards(batch, hw, shards, histogram_block, &j, threads);
    for (int64_t i = 0; i < size; i++) counts[i] = 0;
    if (sums)
        for (int64_t i = 0; i < size; i++) sums[i] = 0.0;
    for (int t = 0; t < shards; t++) { /* each total sums its shards in shard order */
        for (int64_t i = 0; i < size; i++) counts[i] += j.counts[t * size + i];
        if (sums)
            for (int64_t i = 0; i < size; i++) sums[i] += j.sums[t * size + i];
    }
    free(j.counts);
    free(j.sums);
    return 0;
}

/* ---- the re-weighted pseudo-label cross-entropy: its sums, and its gradient ---- */

typedef struct {
    const float *logits, *lse, *confidence, *sample, *scale;
    const int64_t *labels;
    int64_t classes, hw, ignore;
    float conf_thresh, gamma;
    double *partial;     /* forward: (shards, 3) */
    float *grad_logits;  /* backward: (B, C, HW) */
} loss_job;

/* The pixel's label if valid (in [0, C), not ignore, confidence >= threshold), else -1; and its
 * weight confidence^gamma * sample (gamma 0: 1). The same rule in the forward and the backward. */
INLINE int64_t valid_label(const loss_job *j, int64_t at, float *weight) {
    int64_t c = j->labels[at];
    float conf = j->confidence[at];
    float w = j->gamma == 2.0f ? conf * conf : (j->gamma == 0.0f ? 1.0f : powf(conf, j->gamma));
    if (j->sample) w *= j->sample[at];
    *weight = w;
    return (uint64_t)c < (uint64_t)j->classes && c != j->ignore && conf >= j->conf_thresh ? c : -1;
}

CLONES static void loss_block(void *ctx, int shard, int64_t image, int64_t p0, int64_t n) {
    const loss_job *j = (const loss_job *)ctx;
    int64_t at = image * j->hw + p0;
    const float *x = j->logits + image * j->classes * j->hw + p0;
    double weighted_ce = 0.0, valid_weight = 0.0, all_weight = 0.0;
    for (int64_t p = 0; p < n; p++) {
        float w;
        int64_t c = valid_label(j, at + p, &w);
        float ce = c >= 0 ? j->lse[at + p] - x[(c >= 0 ? c : 0) * j->hw + p] : 0.0f;
        weighted_ce += (double)(w * ce);
        valid_weight += (double)(w * (c >= 0 ? 1.0f : 0.0f)); /* NaN * 0 stays NaN, as in PyTorch */
        all_weight += (double)w;
    }
    double *partial = j->partial + 3 * (int64_t)shard;
    partial[0] += weighted_ce;
    partial[1] += valid_weight;
    partial[2] += all_weight;
}

/*
 * The sums of the re-weighted, sampled cross-entropy against pseudo-labels, for contiguous
 * (B, C, HW) float32 logits with their (B, HW) log-sum-exp `lse`, (B, HW) int64 `labels`,
 * float32 `confidence` and optional float32 `sample` mask. A pixel is valid when its label is
 * in [0, C), not `ignore`, and its confidence >= conf_thresh; its weight is
 * confidence^gamma * sample. sums[0] = sum of weight * CE over the valid pixels (CE = lse -
 * logit of the label), sums[1] = sum of the weights of the valid pixels, sums[2] = sum of all
 * weights; in double, over fixed shards. Returns 0, -1 on bad sizes, -2 when memory is short.
 */
int ael_pseudo_label_loss(const float *logits, const float *lse, const int64_t *labels, const float *confidence,
                          const float *sample, int64_t batch, int64_t classes, int64_t hw, int64_t ignore,
                          float conf_thresh, float gamma, double *sums, int threads) {
    if (batch < 0 || classes < 1 || hw < 0) return -1;
    int shards = shard_count(batch, hw, 3);
    loss_job j = {.logits = logits, .lse = lse, .confidence = confidence, .sample = sample, .labels = labels,
                  .classes = classes, .hw = hw, .ignore = ignore, .conf_thresh = conf_thresh, .gamma = gamma};
    j.partial = calloc((size_t)shards * 3, sizeof *j.partial);
    if (!j.partial) return -2;
    parallel_shards(batch, hw, shards, loss_block, &j, threads);
    sums[0] = sums[1] = sums[2] = 0.0;
    for (int t = 0; t < shards; t++)
        for (int k = 0; k < 3; k++) sums[k] += j.partial[3 * t + k];
    free(j.partial);
    return 0;
}

CLONES static void loss_grad_block(void *ctx, int thread, int64_t image, int64_t p0, int64_t n) {
    (void)thread;
    const loss_job *j = (const loss_job *)ctx;
    int64_t at = image * j->hw + p0;
    const float *x = j->logits + image * j->classes * j->hw + p0;
    float *out = j->grad_logits + image * j->classes * j->hw + p0;
    float g[BLOCK], top[BLOCK];
    int64_t target[BLOCK];
    float scale = *j->scale;
    for (int64_t p = 0; p < n; p++) {
        float w;
        target[p] = valid_label(j, at + p, &w);
        g[p] = target[p] >= 0 ? w * scale : 0.0f;
        top[p] = j->lse[at + p];
    }
    for (int64_t c = 0; c < j->classes; c++) {
        const float *xc = x + c * j->hw;
        float *oc = out + c * j->hw;
        for (int64_t p = 0; p < n; p++) {
            oc[p] = softmax_of(xc[p], top[p]) * g[p];
        }
    }
    for (int64_t p = 0; p < n; p++)
        if (target[p] >= 0) out[target[p] * j->hw + p] -= g[p];
}

/*
 * The gradient of sums[0] * (*scale) (ael_pseudo_label_loss) with respect to the logits, into
 * contiguous (B, C, HW) float32 grad_logits: (softmax - onehot(label)) * weight * scale at the
 * valid pixels, 0 elsewhere. `scale` points to one float32 (the upstream gradient over the
 * denominator), read here so that the caller never reads it on the host.
 * Returns 0, or -1 on bad sizes.
 */
int ael_pseudo_label_loss_backward(const float *logits, const float *lse, const int64_t *labels,
                                   const float *confidence, const float *sample, int64_t batch, int64_t classes,
                                   int64_t hw, int64_t ignore, float conf_thresh, float gamma, const float *scale,
                                   float *grad_logits, int threads) {
    if (batch < 0 || classes < 1 || hw < 0 || !scale) return -1;
    loss_job j = {.logits = logits, .lse = lse, .confidence = confidence, .sample = sample, .scale = scale,
                  .labels = labels, .classes = classes, .hw = hw, .ignore = ignore, .conf_thresh = conf_thresh,
                  .gamma = gamma, .grad_logits = grad_logits};
    parallel_blocks(batch, hw, loss_grad_block, &j, threads);
    return 0;
}

/* ---- Copy-Paste: pixels of the chosen classes from a source onto each target ---- */

typedef struct {
    const float *images, *source_images;
    const int64_t *labels, *source_labels, *source;
    const uint8_t *chosen, *applied;
    int64_t batch, classes, hw, channels, ignore;
    float *new_images;
    int64_t *new_labels;
    int64_t *counts; /* (shards, B, C) pasted pixels per class */
} paste_job;

static void paste_block(void *ctx, int shard, int64_t image, int64_t p0, int64_t n) {
    const paste_job *j = (const paste_job *)ctx;
    int64_t at = image * j->hw + p0;
    int applied = j->applied[image] != 0;
    int64_t src = applied ? j->source[image] : 0;
    const int64_t *labels = j->labels + at, *src_labels = j->source_labels + src * j->hw + p0;
    const uint8_t *chosen = j->chosen + image * j->classes;
    int64_t *new_labels = j->new_labels + at;
    int64_t *counts = j->counts + ((int64_t)shard * j->batch + image) * j->classes;
    uint8_t paste[BLOCK];
    for (int64_t p = 0; p < n; p++) {
        int64_t c = src_labels[p];
        int valid = applied && (uint64_t)c < (uint64_t)j->classes && c != j->ignore;
        paste[p] = (uint8_t)(valid && chosen[c]);
        new_labels[p] = paste[p] ? c : labels[p];
        counts[valid ? c : 0] += paste[p];
    }
    for (int64_t ch = 0; ch < j->channels; ch++) {
        int64_t plane = ch * j->hw + p0;
        const float *x = j->images + image * j->channels * j->hw + plane;
        const float *y = j->source_images + src * j->channels * j->hw + plane;
        float *out = j->new_images + image * j->channels * j->hw + plane;
        for (int64_t p = 0; p < n; p++) out[p] = paste[p] ? y[p] : x[p];
    }
}

/*
 * Copy-Paste onto (B, K, HW) float32 images and (B, HW) int64 labels from the (S, K, HW) / (S, HW)
 * pool entry source[b] of each image where applied[b]: every pixel whose source label c is in
 * [0, C), not `ignore`, and chosen[b, c] takes the source's label and pixel values. Writes
 * new_images, new_labels and counts[b, c] (pasted pixels). chosen: (B, C) uint8 (bool);
 * applied: (B,) uint8; source: (B,) int64 in [0, S) where applied (not read elsewhere).
 * Returns 0, -1 on bad sizes, -2 when memory is short.
 */
int ael_copy_paste(const float *images, const int64_t *labels, const float *source_images,
                   const int64_t *source_labels, const int64_t *source, const uint8_t *chosen, const uint8_t *applied,
                   int64_t batch, int64_t channels, int64_t hw, int64_t classes, int64_t ignore, float *new_images,
                   int64_t *new_labels, int64_t *counts, int threads) {
    if (batch < 0 || channels < 0 || classes < 1 || hw < 0) return -1;
    int64_t size = batch * classes;
    int shards = shard_count(batch, hw, size);
    paste_job j = {.images = images, .source_images = source_images, .labels = labels,
                   .source_labels = source_labels, .source = source, .chosen = chosen, .applied = applied,
                   .batch = batch, .classes = classes, .hw = hw, .channels = channels, .ignore = ignore,
                   .new_images = new_images, .new_labels = new_labels};
    j.counts = calloc((size_t)(shards * size + 1), sizeof *j.counts);
    if (!j.counts) return -2;
    parallel_shards(batch, hw, shards, paste_block, &j, threads);
    for (int64_t i = 0; i < size; i++) counts[i] = 0;
    for (int t = 0; t < shards; t++)
        for (int64_t i = 0; i < size; i++) counts[i] += j.counts[t * size + i];
    free(j.counts);
    return 0;
}

/* ---- a random large 8-connected component of one class per map, and its box ---- */

typedef struct {
    const int64_t *pred, *classes;
    const float *uniform;
    int64_t h, w, max_small_area;
    int64_t *boxes;
    uint8_t *found;
    int failed;
} component_job;

static int32_t find_root(int32_t *parent, int32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]]; /* path halving */
        x = parent[x];
    }
    return x;
}

/* Joins the sets of provisional labels a and b under the smaller root, so that a component's
 * root is its first provisional label, which is the label of its first pixel in raster order. */
static int32_t join(int32_t *parent, int32_t a, int32_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a < b) {
        parent[b] = a;
        return a;
    }
    parent[a] = b;
    return b;
}

/* One map: two-pass union-find labelling of the pixels of class `cls` (8-connectivity), area and
 * extent of every component, then the k-th large one (area > max_small_area) in order of first
 * pixel, k = floor(u * L) for L large components: the same draw as the PyTorch implementation.
 * box = (top, left, bottom, right), bottom/right exclusive; found = 0 (box zeros) when L = 0.
 * Returns 0, or -2 when memory is short. */
static int component_box(const int64_t *pred, int64_t cls, float u, int64_t h, int64_t w, int64_t max_small_area,
                         int64_t *box, uint8_t *found) {
    int64_t n = h * w;
    found[0] = 0;
    box[0] = box[1] = box[2] = box[3] = 0;
    if (n == 0) return 0;
    /* A pixel opens a new provisional label only when its left neighbour is not of the class,
     * so a row opens at most ceil(w / 2): labels fit int32 for any map below 2^32 pixels. */
    int64_t most = h * ((w + 1) / 2);
    int32_t *label = malloc((size_t)n * sizeof *label);
    int32_t *parent = malloc((size_t)most * sizeof *parent);
    if (!label || !parent) {
        free(label);
        free(parent);
        return -2;
    }
    int32_t opened = 0;
    for (int64_t y = 0; y < h; y++) {
        const int64_t *row = pred + y * w;
        int32_t *here = label + y * w;
        const int32_t *up = y ? label + (y - 1) * w : 0;
        for (int64_t x = 0; x < w; x++) {
            if (row[x] != cls) {
                here[x] = -1;
                continue;
            }
            /* the neighbours already visited: left, up-left, up, up-right */
            int32_t around[4] = {x ? here[x - 1] : -1, up && x ? up[x - 1] : -1, up ? up[x] : -1,
                                 up && x + 1 < w ? up[x + 1] : -1};
            int32_t root = -1;
            for (int k = 0; k < 4; k++) {
                if (around[k] < 0) continue;
                root = root < 0 ? find_root(parent, around[k]) : join(parent, root, around[k]);
            }
            if (root < 0) {
                root = opened++;
                parent[root] = root;
            }
            here[x] = root;
        }
    }
    /* parent[l] < l below every root, so one increasing pass resolves every label to its root's
     * component number, and components are numbered by their first pixel in raster order. */
    int32_t components = 0;
    for (int32_t l = 0; l < opened; l++) parent[l] = parent[l] == l ? components++ : parent[parent[l]];
    int64_t *stats = calloc((size_t)components * 5 + 1, sizeof *stats); /* area, top, left, bottom, right */
    if (!stats) {
        free(label);
        free(parent);
        return -2;
    }
    for (int32_t k = 0; k < components; k++) {
        stats[5 * k + 1] = h;
        stats[5 * k + 2] = w;
    }
    for (int64_t y = 0; y < h; y++) {
        const int32_t *here = label + y * w;
        for (int64_t x = 0; x < w; x++) {
            if (here[x] < 0) continue;
            int64_t *s = stats + 5 * (int64_t)parent[here[x]];
            s[0]++;
            if (y < s[1]) s[1] = y;
            if (x < s[2]) s[2] = x;
            if (y + 1 > s[3]) s[3] = y + 1;
            if (x + 1 > s[4]) s[4] = x + 1;
        }
    }
    int64_t large = 0;
    for (int32_t k = 0; k < components; k++) large += stats[5 * k] > max_small_area;
    if (large > 0) {
        float position = floorf(u * (float)large); /* float32, as the PyTorch implementation */
        /* clamped in float first: converting NaN or an out-of-range float is undefined */
        int64_t pick = position >= (float)large ? large - 1 : (position >= 0.0f ? (int64_t)position : 0);
        for (int32_t k = 0; k < components; k++) {
            if (stats[5 * k] <= max_small_area || pick-- > 0) continue;
            memcpy(box, stats + 5 * k + 1, 4 * sizeof *box);
            found[0] = 1;
            break;
        }
    }
    free(stats);
    free(label);
    free(parent);
    return 0;
}

static void boxes_of_maps(void *ctx, int thread, int64_t begin, int64_t end) {
    (void)thread;
    component_job *j = (component_job *)ctx;
    int64_t n = j->h * j->w;
    for (int64_t b = begin; b < end; b++)
        if (component_box(j->pred + b * n, j->classes[b], j->uniform[b], j->h, j->w, j->max_small_area,
                           j->boxes + 4 * b, j->found + b))
            __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
}

/*
 * For each map b of contiguous (B, H, W) int64 predictions: the box of a random large
 * 8-connected component of class classes[b] (see component_box), one map per thread.
 * boxes: (B, 4) int64; found: (B,) uint8; uniform: (B,) float32 draws in [0, 1).
 * Returns 0, -1 on bad sizes, -2 when memory is short.
 */
int ael_component_boxes(const int64_t *pred, const int64_t *classes, const float *uniform, int64_t batch, int64_t h,
                        int64_t w, int64_t max_small_area, int64_t *boxes, uint8_t *found, int threads) {
    if (batch < 0 || h < 0 || w < 0 || (h > 0 && w > 0 && h * ((w + 1) / 2) >= INT32_MAX)) return -1;
    component_job j = {.pred = pred, .classes = classes, .uniform = uniform, .h = h, .w = w,
                       .max_small_area = max_small_area, .boxes = boxes, .found = found};
    parallel_range(batch, boxes_of_maps, &j, threads);
    return j.failed ? -2 : 0;
}
