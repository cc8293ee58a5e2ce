"""The dense passes of the Sinkhorn loop: a native CPU kernel (C, built on first use) and a torch twin.

Every softmin update of rnnscope's solver is one *pass* over a dense matrix G (the Gram matrix of the
two clouds), with K_ij = exp((f_i + g_j − C_ij)/ε) and C_ij = hx_i + hy_j − G_ij:

- ``cross_step``: row sums s_i = Σ_j K_ij and column sums t_j = Σ_i K_ij from ONE evaluation of K
  (both updates of the x↔y problem use the same old potentials), optionally keeping K;
- ``self_step``: the row sums of the symmetric x↔x (or y↔y) problem, reading the upper triangle;
- ``mix``: the row-normalised product (K / s[:, None]) @ Y of the backward pass.

Two engines implement them with the same signatures:

- :class:`NativeEngine`: a small C library compiled with the system C compiler the first time it is
  needed (about 1 s), cached under ``$RNNSCOPE_CACHE_DIR`` (default ``~/.cache/rnnscope``) in a
  directory named by a hash of the source, the compiler and the CPU flags. A pass reads G once
  (float32, or bfloat16 when it holds small integers), evaluates the exponential with a vectorised
  polynomial (relative error ≈ 1e-7 on [−87, 88]; arguments are clamped to that range), accumulates
  row and column sums in the same sweep over ``torch.get_num_threads()`` POSIX threads, and then
  finishes the potential update itself when every sum lies in [1e-25, 1e30]. ``mix`` skips plan
  entries at or below ``MIX_THRESHOLD`` and hands over to a dense matrix product when the plan is not
  sparse.
- :class:`TorchEngine`: eager torch ops, any device and float dtype; the caller finishes the update.

:func:`get_engine` picks one: ``"auto"`` takes the native engine for float32 CPU tensors when it
builds and the environment variable ``RNNSCOPE_COMPILE`` is not ``0``, else the torch engine.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

MIX_THRESHOLD = 1e-12
"""Plan entries P_ij = K_ij / s_i at or below this are left out of ``mix``: at most M·1e-12 of a row's mass."""

MIX_DENSE_FRACTION = 1.0 / 16.0
"""``mix`` switches to a dense matrix product once more than this fraction of the plan is kept."""

_C_SOURCE = r"""
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define COL_BLOCK 1024
#define ROW_CHUNK 32
#define SUM_LO 1e-25f
#define SUM_HI 1e30f

typedef union { int32_t i; uint32_t u; float f; } pun32;

/* exp(x) for x clamped to [-87, 88]: Cody-Waite reduction x = k ln2 + r, degree-6 polynomial in r.
   Rounding to the nearest integer uses the 1.5 * 2^23 trick so that the loops vectorise. */
static inline float sk_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    pun32 s;
    s.i = ((int32_t)k + 127) << 23;
    return p * s.f;
}

static inline float bf16_to_f32(uint16_t h) { pun32 v; v.u = (uint32_t)h << 16; return v.f; }

/* sum_j K_ij over j in [j0, j1) with K_ij = exp(a + beta_j + lam G_ij); adds K_ij to col[j] and
   stores it in kout[j] when kout is not NULL. */
static float row_f32(const float *restrict g, const float *restrict beta, float a, float lam,
                     int64_t j0, int64_t j1, float *restrict col, float *restrict kout) {
    float acc = 0.0f;
    if (kout) {
#pragma omp simd reduction(+:acc)
        for (int64_t j = j0; j < j1; ++j) {
            float e = sk_exp(a + beta[j] + lam * g[j]);
            acc += e; col[j] += e; kout[j] = e;
        }
    } else {
#pragma omp simd reduction(+:acc)
        for (int64_t j = j0; j < j1; ++j) {
            float e = sk_exp(a + beta[j] + lam * g[j]);
            acc += e; col[j] += e;
        }
    }
    return acc;
}

static float row_bf16(const uint16_t *restrict g, const float *restrict beta, float a, float lam,
                      int64_t j0, int64_t j1, float *restrict col, float *restrict kout) {
    float acc = 0.0f;
    if (kout) {
#pragma omp simd reduction(+:acc)
        for (int64_t j = j0; j < j1; ++j) {
            float e = sk_exp(a + beta[j] + lam * bf16_to_f32(g[j]));
            acc += e; col[j] += e; kout[j] = e;
        }
    } else {
#pragma omp simd reduction(+:acc)
        for (int64_t j = j0; j < j1; ++j) {
            float e = sk_exp(a + beta[j] + lam * bf16_to_f32(g[j]));
            acc += e; col[j] += e;
        }
    }
    return acc;
}

static float row_any(const void *G, int bf16, int64_t ldg, int64_t i, const float *beta, float a,
                     float lam, int64_t j0, int64_t j1, float *col, float *kout) {
    return bf16 ? row_bf16((const uint16_t *)G + i * ldg, beta, a, lam, j0, j1, col, kout)
                : row_f32((const float *)G + i * ldg, beta, a, lam, j0, j1, col, kout);
}

/* Two rows at once (i and i + 1, same columns): halves the traffic on the column sums. */
static void row_pair(const void *G, int bf16, int64_t ldg, int64_t i, const float *restrict beta, float a0,
                     float a1, float lam, int64_t j0, int64_t j1, float *restrict col, float *acc0_out,
                     float *acc1_out) {
    float acc0 = 0.0f, acc1 = 0.0f;
    if (bf16) {
        const uint16_t *restrict g0 = (const uint16_t *)G + i * ldg, *restrict g1 = g0 + ldg;
#pragma omp simd reduction(+:acc0, acc1)
        for (int64_t j = j0; j < j1; ++j) {
            float b = beta[j];
            float e0 = sk_exp(a0 + b + lam * bf16_to_f32(g0[j]));
            float e1 = sk_exp(a1 + b + lam * bf16_to_f32(g1[j]));
            acc0 += e0; acc1 += e1; col[j] += e0 + e1;
        }
    } else {
        const float *restrict g0 = (const float *)G + i * ldg, *restrict g1 = g0 + ldg;
#pragma omp simd reduction(+:acc0, acc1)
        for (int64_t j = j0; j < j1; ++j) {
            float b = beta[j];
            float e0 = sk_exp(a0 + b + lam * g0[j]);
            float e1 = sk_exp(a1 + b + lam * g1[j]);
            acc0 += e0; acc1 += e1; col[j] += e0 + e1;
        }
    }
    *acc0_out += acc0;
    *acc1_out += acc1;
}

static float g_at(const void *G, int bf16, int64_t ldg, int64_t i, int64_t j) {
    return bf16 ? bf16_to_f32(((const uint16_t *)G)[i * ldg + j]) : ((const float *)G)[i * ldg + j];
}

/* One pass shared by worker threads: worker w takes the row chunks w, w + stride, w + 2 stride, …
   (ROW_CHUNK rows each) and adds its column sums into its own buffer cols + w * m. The assignment is
   static, so every sum is accumulated in the same order on every run: results are bit-reproducible. */
typedef struct {
    const void *G; int bf16; int64_t ldg, n, m;
    const float *alpha, *beta; float lam;
    float *rows, *cols, *kout;
    int symmetric;
    int64_t stride;
} pass_t;

typedef struct { void *task; int w; } worker_t;

static void *pass_worker(void *arg) {
    worker_t *wk = (worker_t *)arg;
    pass_t *p = (pass_t *)wk->task;
    float *col = p->cols + (int64_t)wk->w * p->m;
    for (int64_t i0 = (int64_t)wk->w * ROW_CHUNK; i0 < p->n; i0 += p->stride * ROW_CHUNK) {
        int64_t i1 = i0 + ROW_CHUNK < p->n ? i0 + ROW_CHUNK : p->n;
        const void *G = p->G;
        int bf16 = p->bf16;
        int64_t ldg = p->ldg;
        float lam = p->lam;
        if (p->symmetric) {
            int64_t i = i0;
            for (; i + 1 < i1; i += 2) {
                /* rows i and i + 1: the diagonals, the entry (i, i + 1), then both rows from i + 2 */
                float a0 = p->alpha[i], a1 = p->alpha[i + 1], acc0 = 0.0f, acc1 = 0.0f;
                float e01 = sk_exp(a0 + a1 + lam * g_at(G, bf16, ldg, i, i + 1));
                row_pair(G, bf16, ldg, i, p->alpha, a0, a1, lam, i + 2, p->m, col, &acc0, &acc1);
                col[i] += acc0 + e01 + sk_exp(2.0f * a0 + lam * g_at(G, bf16, ldg, i, i));
                col[i + 1] += acc1 + e01 + sk_exp(2.0f * a1 + lam * g_at(G, bf16, ldg, i + 1, i + 1));
            }
            for (; i < i1; ++i) {
                float a = p->alpha[i];
                float acc = row_any(G, bf16, ldg, i, p->alpha, a, lam, i + 1, p->m, col, 0);
                col[i] += acc + sk_exp(2.0f * a + lam * g_at(G, bf16, ldg, i, i));
            }
        } else {
            for (int64_t i = i0; i < i1; ++i) p->rows[i] = 0.0f;
            for (int64_t j0 = 0; j0 < p->m; j0 += COL_BLOCK) {
                int64_t j1 = j0 + COL_BLOCK < p->m ? j0 + COL_BLOCK : p->m;
                int64_t i = i0;
                if (!p->kout)
                    for (; i + 1 < i1; i += 2)
                        row_pair(G, bf16, ldg, i, p->beta, p->alpha[i], p->alpha[i + 1], lam, j0, j1, col,
                                 &p->rows[i], &p->rows[i + 1]);
                for (; i < i1; ++i)
                    p->rows[i] += row_any(G, bf16, ldg, i, p->beta, p->alpha[i], lam, j0, j1, col,
                                          p->kout ? p->kout + i * p->m : 0);
            }
        }
    }
    return 0;
}

static void run_workers(void *(*fn)(void *), void *task, int nthreads) {
    pthread_t threads[64];
    worker_t workers[64];
    if (nthreads > 64) nthreads = 64;
    if (nthreads < 1) nthreads = 1;
    int created[64] = {0};
    for (int w = 0; w < nthreads; ++w) { workers[w].task = task; workers[w].w = w; }
    for (int w = 1; w < nthreads; ++w) created[w] = pthread_create(&threads[w], 0, fn, &workers[w]) == 0;
    fn(&workers[0]);
    /* a worker whose thread could not be started runs here, so its static share is never skipped */
    for (int w = 1; w < nthreads; ++w) {
        if (created[w]) pthread_join(threads[w], 0); else fn(&workers[w]);
    }
}

static int in_range(float s) { return s > SUM_LO && s < SUM_HI; }

/* Reduce the per-worker column buffers into cols[0:m]. */
static void reduce_cols(float *cols, int64_t m, int nthreads) {
    for (int w = 1; w < nthreads; ++w)
        for (int64_t j = 0; j < m; ++j) cols[j] += cols[(int64_t)w * m + j];
}

/* The x<->y softmin updates from (f, g) at temperature eps (cost C = hx + hy - G):
   f_new = f - eps (log_b + log sum_j K_ij), g_new = g - eps (log_a + log sum_i K_ij),
   K_ij = exp((f_i + g_j - C_ij) / eps). With average, outputs are (f + f_new) / 2, (g + g_new) / 2.
   rows (n) and cols (nthreads * m, first m on return) receive the sums, kout (n * m, optional) K.
   Returns the number of sums out of range; the outputs f_out, g_out are then not written. */
int64_t sk_cross_step(const void *G, int bf16, int64_t ldg, int64_t n, int64_t m,
                      const float *f, const float *g, const float *hx, const float *hy, float eps,
                      float log_a, float log_b, int average, float *f_out, float *g_out,
                      float *alpha, float *beta, float *rows, float *cols, float *kout, int nthreads) {
    float lam = 1.0f / eps;
    for (int64_t i = 0; i < n; ++i) alpha[i] = (f[i] - hx[i]) / eps;
    for (int64_t j = 0; j < m; ++j) beta[j] = (g[j] - hy[j]) / eps;
    for (int64_t k = 0; k < (int64_t)nthreads * m; ++k) cols[k] = 0.0f;
    pass_t pass = {G, bf16, ldg, n, m, alpha, beta, lam, rows, cols, kout, 0, nthreads < 1 ? 1 : (nthreads > 64 ? 64 : nthreads)};
    run_workers(pass_worker, &pass, nthreads);
    reduce_cols(cols, m, nthreads);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad += !in_range(rows[i]);
    for (int64_t j = 0; j < m; ++j) bad += !in_range(cols[j]);
    if (bad) return bad;
    for (int64_t i = 0; i < n; ++i) {
        float fn = f[i] - eps * (log_b + logf(rows[i]));
        f_out[i] = average ? 0.5f * (f[i] + fn) : fn;
    }
    for (int64_t j = 0; j < m; ++j) {
        float gn = g[j] - eps * (log_a + logf(cols[j]));
        g_out[j] = average ? 0.5f * (g[j] + gn) : gn;
    }
    return 0;
}

/* The symmetric softmin update of one cloud (G symmetric, n x n), reading the upper triangle:
   h_new = h - eps (log_a + log sum_k K_ik), K_ik = exp((h_i + h_k - C_ik) / eps).
   sums: nthreads * n workspace (first n: the row sums on return). Returns the out-of-range count. */
int64_t sk_self_step(const void *G, int bf16, int64_t ldg, int64_t n, const float *h, const float *hx,
                     float eps, float log_a, int average, float *h_out, float *alpha, float *sums,
                     int nthreads) {
    float lam = 1.0f / eps;
    for (int64_t i = 0; i < n; ++i) alpha[i] = (h[i] - hx[i]) / eps;
    for (int64_t k = 0; k < (int64_t)nthreads * n; ++k) sums[k] = 0.0f;
    pass_t pass = {G, bf16, ldg, n, n, alpha, alpha, lam, 0, sums, 0, 1, nthreads < 1 ? 1 : (nthreads > 64 ? 64 : nthreads)};
    run_workers(pass_worker, &pass, nthreads);
    reduce_cols(sums, n, nthreads);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad += !in_range(sums[i]);
    if (bad) return bad;
    for (int64_t i = 0; i < n; ++i) {
        float hn = h[i] - eps * (log_a + logf(sums[i]));
        h_out[i] = average ? 0.5f * (h[i] + hn) : hn;
    }
    return 0;
}

/* out[i] = sum_j (K_ij / s_i) Y[j] over the entries with K_ij / s_i > thresh. */
typedef struct {
    const float *K; int64_t n, m; const float *inv_s; float thresh; const float *Y; int64_t d;
    float *out; int64_t budget, used, next;
} mix_t;

static void *mix_worker(void *arg) {
    mix_t *p = (mix_t *)((worker_t *)arg)->task;
    for (;;) {
        int64_t i0 = __atomic_fetch_add(&p->next, ROW_CHUNK, __ATOMIC_RELAXED);
        if (i0 >= p->n) break;
        int64_t i1 = i0 + ROW_CHUNK < p->n ? i0 + ROW_CHUNK : p->n, used = 0;
        for (int64_t i = i0; i < i1; ++i) {
            const float *k = p->K + i * p->m;
            float r = p->inv_s[i], lim = p->thresh / r;
            float *o = p->out + i * p->d;
            for (int64_t t = 0; t < p->d; ++t) o[t] = 0.0f;
            for (int64_t j0 = 0; j0 < p->m; j0 += 64) {
                int64_t j1 = j0 + 64 < p->m ? j0 + 64 : p->m;
                float top = 0.0f;
#pragma omp simd reduction(max:top)
                for (int64_t j = j0; j < j1; ++j) top = k[j] > top ? k[j] : top;
                if (!(top > lim)) continue;
                for (int64_t j = j0; j < j1; ++j) {
                    if (!(k[j] > lim)) continue;
                    float w = k[j] * r;
                    const float *y = p->Y + j * p->d;
#pragma omp simd
                    for (int64_t t = 0; t < p->d; ++t) o[t] += w * y[t];
                    ++used;
                }
            }
        }
        if (__atomic_add_fetch(&p->used, used, __ATOMIC_RELAXED) > p->budget) break;
    }
    return 0;
}

/* Returns the number of plan entries used, or -1 if it exceeded budget (out is then incomplete). */
int64_t sk_mix(const float *K, int64_t n, int64_t m, const float *inv_s, float thresh, const float *Y,
               int64_t d, float *out, int64_t budget, int nthreads) {
    mix_t task = {K, n, m, inv_s, thresh, Y, d, out, budget, 0, 0};
    run_workers(mix_worker, &task, nthreads);
    return task.used > budget ? -1 : task.used;
}
"""

_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp-simd", "-pthread", "-shared", "-fPIC"]

_PLAN_BUFFERS = 4
"""Kept-plan buffers the native engine pools between calls (see ``_plan_buffer``)."""

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_library_error: str | None = None
_plan_buffers: list[Tensor] = []


class Sums(NamedTuple):
    """What one pass returns: kernel row sums (N,), column sums (M,) or None, kept K (N, M) or None,
    and — when every sum was in range and the engine finished the update itself — the new potentials."""

    rows: Tensor
    cols: Tensor | None
    K: Tensor | None
    f: Tensor | None = None
    g: Tensor | None = None


class TorchEngine:
    """The passes with eager torch ops (any device, any float dtype); the caller finishes the update."""

    name = "torch"

    def cross_step(self, G, f, g, hx, hy, eps, log_a, log_b, average, keep) -> Sums:
        """Sums of K = exp((f ⊕ g − C)/ε), C = hx ⊕ hy − G, over rows and columns; K itself if ``keep``."""
        K = exponent(G, (f - hx) / eps, (g - hy) / eps, 1.0 / eps).exp_()
        return Sums(K.sum(1), K.sum(0), K if keep else None)

    def self_step(self, G, h, hx, eps, log_a, average) -> Sums:
        """Row sums of K = exp((h ⊕ h − C)/ε), C = hx ⊕ hx − G, for a symmetric G of shape (N, N)."""
        alpha = (h - hx) / eps
        return Sums(exponent(G, alpha, alpha, 1.0 / eps).exp_().sum(1), None, None)

    def mix(self, K: Tensor, s: Tensor, Y: Tensor) -> Tensor:
        """(K / s[:, None]) @ Y, of shape (N, D), for K (N, M), s (N,), Y (M, D)."""
        return torch.mm(K, Y.to(K.dtype)).div_(s[:, None])


class NativeEngine:
    """The passes in the compiled C library (float32 CPU tensors), which also finishes the update."""

    name = "native"

    def __init__(self, library: ctypes.CDLL) -> None:
        self._lib = library

    def cross_step(self, G, f, g, hx, hy, eps, log_a, log_b, average, keep) -> Sums:
        """The x↔y softmin updates from (f, g) at ε (averaged with the old ones if ``average``)."""
        G = _rows_contiguous(G)
        n, m = G.shape
        threads = _threads()
        f, g, hx, hy = _f32(f), _f32(g), _f32(hx), _f32(hy)
        f_out, g_out, alpha, beta = torch.empty(n), torch.empty(m), torch.empty(n), torch.empty(m)
        rows, cols = torch.empty(n), torch.empty(threads * m)
        K = _plan_buffer(n, m) if keep else None
        bad = self._lib.sk_cross_step(
            G.data_ptr(), int(G.dtype == torch.bfloat16), G.stride(0), n, m, f.data_ptr(), g.data_ptr(),
            hx.data_ptr(), hy.data_ptr(), eps, log_a, log_b, int(average), f_out.data_ptr(), g_out.data_ptr(),
            alpha.data_ptr(), beta.data_ptr(), rows.data_ptr(), cols.data_ptr(),
            K.data_ptr() if K is not None else None, threads,
        )
        if bad:
            return Sums(rows, cols[:m], K)
        return Sums(rows, cols[:m], K, f_out, g_out)

    def self_step(self, G, h, hx, eps, log_a, average) -> Sums:
        """The symmetric softmin update of one cloud, reading the upper triangle of G (N, N)."""
        G = _rows_contiguous(G)
        n = G.shape[0]
        threads = _threads()
        h, hx = _f32(h), _f32(hx)
        h_out, alpha, sums = torch.empty(n), torch.empty(n), torch.empty(threads * n)
        bad = self._lib.sk_self_step(
            G.data_ptr(), int(G.dtype == torch.bfloat16), G.stride(0), n, h.data_ptr(), hx.data_ptr(), eps,
            log_a, int(average), h_out.data_ptr(), alpha.data_ptr(), sums.data_ptr(), threads,
        )
        return Sums(sums[:n], None, None, None if bad else h_out)

    def mix(self, K: Tensor, s: Tensor, Y: Tensor) -> Tensor:
        """(K / s[:, None]) @ Y, of shape (N, D), skipping plan entries ≤ ``MIX_THRESHOLD``; dense if not sparse."""
        n, m = K.shape
        Y, inv_s = _f32(Y), _f32(1.0 / s)
        out = torch.empty(n, Y.shape[1])
        budget = int(MIX_DENSE_FRACTION * n * m)
        used = self._lib.sk_mix(
            K.data_ptr(), n, m, inv_s.data_ptr(), MIX_THRESHOLD, Y.data_ptr(), Y.shape[1], out.data_ptr(),
            budget, _threads(),
        )
        if used < 0:
            return torch.mm(K, Y).mul_(inv_s[:, None])
        return out


def get_engine(engine: str, reference: Tensor) -> TorchEngine | NativeEngine:
    """The engine for ``engine`` in {"auto", "native", "torch"} and tensors like ``reference``.

    ``"native"`` raises ``RuntimeError`` if the library cannot be built or the tensors are not float32
    on the CPU; ``"auto"`` then uses the torch engine instead, as it does when ``RNNSCOPE_COMPILE=0``.
    """
    if engine == "torch":
        return TorchEngine()
    if engine not in ("auto", "native"):
        raise ValueError(f"engine must be one of 'auto', 'native', 'torch'; got {engine!r}")
    suitable = reference.device.type == "cpu" and reference.dtype == torch.float32
    if engine == "auto":
        if suitable and os.environ.get("RNNSCOPE_COMPILE", "1") != "0":
            library = native_library()
            if library is not None:
                return NativeEngine(library)
        return TorchEngine()
    if not suitable:
        raise RuntimeError(
            f"the native Sinkhorn engine needs float32 CPU tensors; got {reference.dtype} on "
            f"{reference.device}. Use engine='auto' or 'torch'."
        )
    library = native_library()
    if library is None:
        raise RuntimeError(f"the native Sinkhorn kernel is unavailable ({_library_error}); use engine='torch'.")
    return NativeEngine(library)


def native_library() -> ctypes.CDLL | None:
    """The compiled kernel library, built on first use; None (after one warning) if that fails."""
    global _library, _library_error
    with _lock:
        if _library is None and _library_error is None:
            try:
                _library = _load(_build())
            except (OSError, subprocess.SubprocessError, RuntimeError) as error:
                _library_error = str(error)
                warnings.warn(
                    f"rnnscope: the native Sinkhorn kernel could not be built ({error}); "
                    "using the slower torch engine.",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return _library


def exponent(G: Tensor, alpha: Tensor, beta: Tensor, lam: float) -> Tensor:
    """alpha_i + beta_j + lam·G_ij as a new tensor of shape (N, M), in alpha's dtype."""
    z = G.to(alpha.dtype) * lam
    z += alpha[:, None]
    z += beta[None, :]
    return z


def _build() -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler found; install one or set CC")
    key = hashlib.sha256(
        "\n".join([_C_SOURCE, compiler, " ".join(_FLAGS), platform.machine(), _cpu_flags()]).encode()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("RNNSCOPE_CACHE_DIR", Path.home() / ".cache" / "rnnscope"))
    target = cache / "kernels" / key / "libsinkhorn.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source = Path(tmp) / "sinkhorn.c"
        source.write_text(_C_SOURCE)
        built = Path(tmp) / "libsinkhorn.so"
        result = subprocess.run(
            [compiler, *_FLAGS, "-o", str(built), str(source), "-lm"], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[:500]}")
        os.replace(built, target)
    return target


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    ptr, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
    lib.sk_cross_step.argtypes = [ptr, i32, i64, i64, i64, ptr, ptr, ptr, ptr, f32, f32, f32, i32,
                                  ptr, ptr, ptr, ptr, ptr, ptr, ptr, i32]
    lib.sk_cross_step.restype = i64
    lib.sk_self_step.argtypes = [ptr, i32, i64, i64, ptr, ptr, f32, f32, i32, ptr, ptr, ptr, i32]
    lib.sk_self_step.restype = i64
    lib.sk_mix.argtypes = [ptr, i64, i64, ptr, f32, ptr, i64, ptr, i64, i32]
    lib.sk_mix.restype = i64
    return lib


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _plan_buffer(n: int, m: int) -> Tensor:
    """An (n, m) float32 buffer for a kept plan, reused once nothing else refers to it.

    Fresh 64 MiB allocations cost ~20 ms of page faults each; the pool keeps at most
    ``_PLAN_BUFFERS`` buffers. A buffer still held (e.g. by an autograd graph awaiting backward)
    has a reference count above 2 (the pool's and getrefcount's argument) and is never handed out.
    """
    with _lock:
        for index in range(len(_plan_buffers)):
            if _plan_buffers[index].shape == (n, m) and sys.getrefcount(_plan_buffers[index]) == 2:
                return _plan_buffers[index]
        buffer = torch.empty(n, m)
        _plan_buffers.append(buffer)
        if len(_plan_buffers) > _PLAN_BUFFERS:
            _plan_buffers.pop(0)
        return buffer


def _threads() -> int:
    return max(1, min(64, torch.get_num_threads()))


def _rows_contiguous(G: Tensor) -> Tensor:
    return G if G.stride(1) == 1 else G.contiguous()


def _f32(v: Tensor) -> Tensor:
    return v.to(torch.float32).contiguous()
