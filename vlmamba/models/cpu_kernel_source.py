# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The C++ source of the fused CPU selective scan, which `cpu_kernel` compiles at first use.

It is kept as a Python string so that it travels with the modeling code: a model folder saved for
`trust_remote_code=True` holds the package's Python files only, and a user without vlmamba installed still gets
the fused kernel.
"""

CPP_SOURCE = r"""
// The Mamba-1 selective scan on CPU, forward and backward, fused: one pass over time per block of channels, the
// state of a block held in a small local array, every elementwise step around the recurrence (softplus of the time
// step, the padding mask, sequence-boundary resets, the skip connection, the gate) done in the same pass.
//
// Built at first use by `vlmamba/models/cpu_kernel.py` with the system's C++ compiler and loaded with ctypes (no
// Python or torch headers, so it builds in about a second); without a compiler, the PyTorch chunked scan runs.
// Each exported function processes a range of work items, on `threads` OpenMP threads when built with OpenMP; else
// the Python side runs ranges on its own threads (ctypes releases the GIL). A work item is one (sample, group, part of
// the group's channels); items write disjoint outputs.
//
// Layouts (b = batch, L = length, g = groups, n = state, E = channels per group, D = g * E):
//   u, delta, z: (b, L, D) with unit channel stride, batch and time strides given     out: (b, L, D) contiguous
//   A: (g, n, E)   B, C: (b, L, g, n)   D, bias: (D)   mask, reset: (b, L)   h0, last: (b, g, n, E)
//   checkpoints: (b, chunks, g, n, E), the state entering each chunk of `every` steps (written by the forward when
//   the backward will run, read by the backward).
// The recurrence, per channel and state: h_t = reset_t ? 0 : exp(delta_t A) h_{t-1}, then h_t += delta_t u_t B_t;
// y_t = C_t . h_t + D u_t; out_t = y_t * silu(z_t); delta_t = softplus(raw_t + bias) * mask_t.

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace {

// exp(x) in float: 2^r * 2^f with r = round(x log2 e), |f| <= 1/2, 2^f from its Taylor series to degree 7
// (truncation below 6e-9 relative). Branch-free, so loops over channels vectorize. Results below 2^-126 are 0,
// above 2^128 infinity, as the sequential recurrence's exponentials underflow and overflow.
inline float exp_approx(float x) {
  float y = x * 1.4426950408889634f;
  float clamped = y < -126.0f ? -126.0f : (y > 127.0f ? 127.0f : y);
  float r = (clamped + 12582912.0f) - 12582912.0f;  // round to nearest
  float f = (clamped - r) * 0.6931471805599453f;
  float p = 1.0f + f * (1.0f + f * (0.5f + f * (1.6666666666666666e-1f + f * (4.1666666666666664e-2f +
            f * (8.3333333333333332e-3f + f * (1.3888888888888889e-3f + f * 1.9841269841269841e-4f))))));
  int32_t bits = ((int32_t)r + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof(scale));
  float value = p * scale;
  value = y < -126.0f ? 0.0f : value;
  return y > 128.0f ? INFINITY : value;
}

// log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) <= 1/3, its series to s^19 (below 3e-11 relative).
inline float log1p_unit(float e) {
  float s = e / (2.0f + e);
  float s2 = s * s;
  float p = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11 +
            s2 * (1.0f / 13 + s2 * (1.0f / 15 + s2 * (1.0f / 17 + s2 * (1.0f / 19)))))))));
  return 2.0f * s * p;
}

// softplus(x) = max(x, 0) + log(1 + exp(-|x|)); PyTorch returns x itself above 20, as here.
inline float softplus_of(float x) {
  float a = x < 0.0f ? x : -x;
  float value = (x > 0.0f ? x : 0.0f) + log1p_unit(exp_approx(a));
  return x > 20.0f ? x : value;
}

inline float sigmoid_of(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

inline double exp_approx(double x) { return exp(x); }
inline double softplus_of(double x) { return x > 20.0 ? x : log1p(exp(x)); }
inline double sigmoid_of(double x) { return 1.0 / (1.0 + exp(-x)); }

template <typename T>
struct Scan {
  int64_t batch, length, groups, per_group, state;
  const T *u, *delta, *A, *B, *C, *D, *bias, *z, *mask, *reset, *h0;
  int64_t u_batch, u_time, delta_batch, delta_time, z_batch, z_time;
  int softplus;
  int64_t parts, every;
};

// Channels [begin, end) of group `group` for part `part` of `parts`, in whole blocks of `Width` where possible.
template <int Width>
inline void part_range(int64_t per_group, int64_t parts, int64_t part, int64_t *begin, int64_t *end) {
  int64_t blocks = (per_group + Width - 1) / Width;
  *begin = (blocks * part / parts) * Width;
  *end = (blocks * (part + 1) / parts) * Width;
  if (*end > per_group) *end = per_group;
  if (*begin > per_group) *begin = per_group;
}

// `lanes` values from `source` (none if it is NULL), zeros after them: every loop below runs over whole blocks.
template <typename T, int Width>
inline void load(const T *__restrict source, int lanes, T *__restrict target) {
  if (source && lanes == Width) {
    for (int w = 0; w < Width; w++) target[w] = source[w];
    return;
  }
  for (int w = 0; w < Width; w++) target[w] = T(0);
  if (source)
    for (int w = 0; w < lanes; w++) target[w] = source[w];
}

template <typename T, int Width>
inline void store(const T *__restrict source, int lanes, T *__restrict target) {
  if (lanes == Width) {
    for (int w = 0; w < Width; w++) target[w] = source[w];
    return;
  }
  for (int w = 0; w < lanes; w++) target[w] = source[w];
}

// The effective time step of a block at (sample, t): softplus(raw + bias) * mask, and softplus's input.
template <typename T, int Width>
inline void time_steps(const Scan<T> &s, int64_t sample, int64_t t, int64_t channel, int lanes, const T *bias,
                       T *__restrict d, T *__restrict pre) {
  load<T, Width>(s.delta + sample * s.delta_batch + t * s.delta_time + channel, lanes, pre);
  T keep = s.mask ? s.mask[sample * s.length + t] : T(1);
  for (int w = 0; w < Width; w++) pre[w] += bias[w];
  if (s.softplus) {
    for (int w = 0; w < Width; w++) d[w] = softplus_of(pre[w]) * keep;
  } else {
    for (int w = 0; w < Width; w++) d[w] = pre[w] * keep;
  }
}

// One step of the recurrence for a block: updates `h` (state x Width) and adds C . h to `y`. `A` is the block's
// (state x Width) copy, zero in unused lanes, so that those lanes stay finite.
// With `Keep`, the step's decays go to `decays` (state x Width) and y is not computed.
template <typename T, int Width, bool Keep>
inline void step(const Scan<T> &s, const T *__restrict A, const T *Bt, const T *Ct, const T *__restrict d,
                 const T *__restrict dtu, T keep, T *__restrict h, T *__restrict y, T *__restrict decays) {
  for (int64_t n = 0; n < s.state; n++) {
    T *hn = h + n * Width;
    const T *An = A + n * Width;
    T b = Bt[n], c = Ct[n];
    for (int w = 0; w < Width; w++) {
      T decay = exp_approx(d[w] * An[w]) * keep;
      hn[w] = decay * hn[w] + b * dtu[w];
      if (Keep) {
        decays[n * Width + w] = decay;
      } else {
        y[w] += c * hn[w];
      }
    }
  }
}

// A block's constants: its A (state x Width), D and delta bias, zero in unused lanes.
template <typename T, int Width>
inline void block_constants(const Scan<T> &s, int64_t group, int64_t e0, int lanes, T *A, T *Dw, T *bias) {
  int64_t channel = group * s.per_group + e0;
  for (int64_t k = 0; k < s.state; k++)
    load<T, Width>(s.A + (group * s.state + k) * s.per_group + e0, lanes, A + k * Width);
  load<T, Width>(s.D ? s.D + channel : nullptr, lanes, Dw);
  load<T, Width>(s.bias ? s.bias + channel : nullptr, lanes, bias);
}

template <typename T, int Width>
void forward_item(const Scan<T> &s, int64_t item, T *out, T *last, T *checkpoints) {
  int64_t sample = item / (s.groups * s.parts), group = (item / s.parts) % s.groups, part = item % s.parts;
  int64_t begin, end, D = s.groups * s.per_group, n = s.state;
  part_range<Width>(s.per_group, s.parts, part, &begin, &end);
  int64_t chunks = s.every > 0 ? (s.length + s.every - 1) / s.every : 0;
  T *h = (T *)malloc(sizeof(T) * n * Width);
  T *A = (T *)malloc(sizeof(T) * n * Width);
  for (int64_t e0 = begin; e0 < end; e0 += Width) {
    int lanes = (int)(end - e0 < Width ? end - e0 : Width);
    int64_t channel = group * s.per_group + e0;
    T Dw[Width], bias[Width], d[Width], pre[Width], x[Width], dtu[Width], y[Width], zt[Width];
    block_constants<T, Width>(s, group, e0, lanes, A, Dw, bias);
    for (int64_t k = 0; k < n; k++) {
      const T *start = s.h0 ? s.h0 + ((sample * s.groups + group) * n + k) * s.per_group + e0 : nullptr;
      load<T, Width>(start, start ? lanes : 0, h + k * Width);
    }
    for (int64_t t = 0; t < s.length; t++) {
      if (checkpoints && t % s.every == 0) {
        T *target = checkpoints + (((sample * chunks + t / s.every) * s.groups + group) * n) * s.per_group + e0;
        for (int64_t k = 0; k < n; k++) memcpy(target + k * s.per_group, h + k * Width, sizeof(T) * lanes);
      }
      time_steps<T, Width>(s, sample, t, channel, lanes, bias, d, pre);
      load<T, Width>(s.u + sample * s.u_batch + t * s.u_time + channel, lanes, x);
      for (int w = 0; w < Width; w++) {
        dtu[w] = d[w] * x[w];
        y[w] = Dw[w] * x[w];
      }
      T keep = s.reset && s.reset[sample * s.length + t] != T(0) ? T(0) : T(1);
      int64_t row = (sample * s.length + t) * s.groups + group;
      step<T, Width, false>(s, A, s.B + row * n, s.C + row * n, d, dtu, keep, h, y, nullptr);
      if (s.z) {
        load<T, Width>(s.z + sample * s.z_batch + t * s.z_time + channel, lanes, zt);
        for (int w = 0; w < Width; w++) y[w] *= zt[w] * sigmoid_of(zt[w]);
      }
      store<T, Width>(y, lanes, out + (sample * s.length + t) * D + channel);
    }
    if (last) {
      for (int64_t k = 0; k < n; k++) {
        T *target = last + ((sample * s.groups + group) * n + k) * s.per_group + e0;
        memcpy(target, h + k * Width, sizeof(T) * lanes);
      }
    }
  }
  free(h);
  free(A);
}

struct Grads {
  void *grad_u, *grad_delta, *grad_z;            // (b, L, D) contiguous
  void *grad_B, *grad_C;                         // (parts, b, L, g, n), zeroed, summed over parts by the caller
  void *grad_A;                                  // (b, g, n, E), summed over the batch by the caller
  void *grad_D, *grad_bias;                      // (b, D), summed over the batch by the caller
  void *grad_h0;                                 // (b, g, n, E)
};

template <typename T, int Width>
void backward_item(const Scan<T> &s, int64_t item, const T *grad_out, const T *grad_last, const T *checkpoints,
                   const Grads &g) {
  int64_t sample = item / (s.groups * s.parts), group = (item / s.parts) % s.groups, part = item % s.parts;
  int64_t begin, end, D = s.groups * s.per_group, n = s.state, every = s.every;
  part_range<Width>(s.per_group, s.parts, part, &begin, &end);
  int64_t chunks = (s.length + every - 1) / every;
  T *grad_u = (T *)g.grad_u, *grad_delta = (T *)g.grad_delta, *grad_z = (T *)g.grad_z;
  T *grad_B = (T *)g.grad_B + part * s.batch * s.length * s.groups * n;
  T *grad_C = (T *)g.grad_C + part * s.batch * s.length * s.groups * n;
  T *grad_A = (T *)g.grad_A, *grad_D = (T *)g.grad_D, *grad_bias = (T *)g.grad_bias, *grad_h0 = (T *)g.grad_h0;
  // The chunk's states (states[i] enters step begin + i), the adjoint carried backwards, and per-step sums of the
  // B and C gradients over this part's channels, kept as Width lanes and summed across lanes once at the end.
  T *states = (T *)malloc(sizeof(T) * (every + 1) * n * Width);
  T *decays = (T *)malloc(sizeof(T) * every * n * Width);
  T *step_deltas = (T *)malloc(sizeof(T) * every * Width), *step_factors = (T *)malloc(sizeof(T) * every * Width);
  T *carry = (T *)malloc(sizeof(T) * n * Width);
  T *lanes_B = (T *)calloc((size_t)(s.length * n * Width), sizeof(T));
  T *lanes_C = (T *)calloc((size_t)(s.length * n * Width), sizeof(T));
  T *lanes_A = (T *)malloc(sizeof(T) * n * Width);
  T *A = (T *)malloc(sizeof(T) * n * Width);
  for (int64_t e0 = begin; e0 < end; e0 += Width) {
    int lanes = (int)(end - e0 < Width ? end - e0 : Width);
    int64_t channel = group * s.per_group + e0;
    T Dw[Width], bias[Width], d[Width], pre[Width], x[Width], dtu[Width], y[Width], gy[Width], gdtu[Width];
    T gdelta[Width], gD[Width], gbias[Width], zt[Width], go[Width], gz[Width], gu[Width], gd[Width];
    block_constants<T, Width>(s, group, e0, lanes, A, Dw, bias);
    for (int w = 0; w < Width; w++) gD[w] = gbias[w] = T(0);
    for (int64_t k = 0; k < n * Width; k++) lanes_A[k] = T(0);
    for (int64_t k = 0; k < n; k++) {
      const T *source = grad_last ? grad_last + ((sample * s.groups + group) * n + k) * s.per_group + e0 : nullptr;
      load<T, Width>(source, source ? lanes : 0, carry + k * Width);
    }
    for (int64_t chunk = chunks - 1; chunk >= 0; chunk--) {
      int64_t t0 = chunk * every, t1 = t0 + every < s.length ? t0 + every : s.length;
      for (int64_t k = 0; k < n; k++) {
        const T *source = checkpoints + (((sample * chunks + chunk) * s.groups + group) * n + k) * s.per_group + e0;
        load<T, Width>(source, lanes, states + k * Width);
      }
      // Recompute the chunk's states.
      for (int64_t t = t0; t < t1; t++) {
        T *h = states + (t - t0 + 1) * n * Width;
        memcpy(h, h - n * Width, sizeof(T) * n * Width);
        time_steps<T, Width>(s, sample, t, channel, lanes, bias, d, pre);
        // The time step and d delta / d raw (the mask times softplus's derivative), for the reverse pass.
        T *dt = step_deltas + (t - t0) * Width, *factor = step_factors + (t - t0) * Width;
        T keep_mask = s.mask ? s.mask[sample * s.length + t] : T(1);
        for (int w = 0; w < Width; w++) dt[w] = d[w];
        if (s.softplus) {
          for (int w = 0; w < Width; w++) factor[w] = sigmoid_of(pre[w]) * keep_mask;
        } else {
          for (int w = 0; w < Width; w++) factor[w] = keep_mask;
        }
        load<T, Width>(s.u + sample * s.u_batch + t * s.u_time + channel, lanes, x);
        for (int w = 0; w < Width; w++) {
          dtu[w] = d[w] * x[w];
          y[w] = T(0);
        }
        T keep = s.reset && s.reset[sample * s.length + t] != T(0) ? T(0) : T(1);
        int64_t row = (sample * s.length + t) * s.groups + group;
        step<T, Width, true>(s, A, s.B + row * n, s.C + row * n, d, dtu, keep, h, y,
                             decays + (t - t0) * n * Width);
      }
      // The adjoint recurrence, backwards through the chunk.
      for (int64_t t = t1 - 1; t >= t0; t--) {
        const T *h = states + (t - t0 + 1) * n * Width, *previous = h - n * Width;
        const T *factor = step_factors + (t - t0) * Width;
        for (int w = 0; w < Width; w++) d[w] = step_deltas[(t - t0) * Width + w];
        load<T, Width>(s.u + sample * s.u_batch + t * s.u_time + channel, lanes, x);
        int64_t row = (sample * s.length + t) * s.groups + group;
        const T *Bt = s.B + row * n, *Ct = s.C + row * n;
        const T *decay_t = decays + (t - t0) * n * Width;
        int64_t at = (sample * s.length + t) * D + channel;
        load<T, Width>(grad_out + at, lanes, go);
        for (int w = 0; w < Width; w++) {
          dtu[w] = d[w] * x[w];
          y[w] = Dw[w] * x[w];
          gdtu[w] = gdelta[w] = T(0);
        }
        for (int64_t k = 0; k < n; k++)
          for (int w = 0; w < Width; w++) y[w] += Ct[k] * h[k * Width + w];
        if (s.z) {
          load<T, Width>(s.z + sample * s.z_batch + t * s.z_time + channel, lanes, zt);
          for (int w = 0; w < Width; w++) {
            T sig = sigmoid_of(zt[w]);
            gz[w] = go[w] * y[w] * sig * (T(1) + zt[w] * (T(1) - sig));
            gy[w] = go[w] * zt[w] * sig;
          }
          store<T, Width>(gz, lanes, grad_z + at);
        } else {
          for (int w = 0; w < Width; w++) gy[w] = go[w];
        }
        for (int w = 0; w < Width; w++) gD[w] += gy[w] * x[w];
        T *sum_B = lanes_B + t * n * Width, *sum_C = lanes_C + t * n * Width;
        for (int64_t k = 0; k < n; k++) {
          const T *hk = h + k * Width, *pk = previous + k * Width;
          const T *An = A + k * Width;
          T *ck = carry + k * Width, *ak = lanes_A + k * Width;
          T b = Bt[k], c = Ct[k];
          for (int w = 0; w < Width; w++) {
            T adjoint = c * gy[w] + ck[w];
            sum_C[k * Width + w] += gy[w] * hk[w];
            sum_B[k * Width + w] += dtu[w] * adjoint;
            gdtu[w] += b * adjoint;
            T decay = decay_t[k * Width + w];
            T exponent = adjoint * pk[w] * decay;  // d loss / d (delta A)
            gdelta[w] += exponent * An[w];
            ak[w] += exponent * d[w];
            ck[w] = decay * adjoint;
          }
        }
        for (int w = 0; w < Width; w++) {
          gu[w] = gdtu[w] * d[w] + gy[w] * Dw[w];
          gd[w] = (gdelta[w] + gdtu[w] * x[w]) * factor[w];
        }
        for (int w = 0; w < Width; w++) gbias[w] += gd[w];
        store<T, Width>(gu, lanes, grad_u + at);
        store<T, Width>(gd, lanes, grad_delta + at);
      }
    }
    for (int64_t k = 0; k < n; k++) {
      int64_t offset = ((sample * s.groups + group) * n + k) * s.per_group + e0;
      if (grad_h0) memcpy(grad_h0 + offset, carry + k * Width, sizeof(T) * lanes);
      memcpy(grad_A + offset, lanes_A + k * Width, sizeof(T) * lanes);
    }
    if (grad_D) memcpy(grad_D + sample * D + channel, gD, sizeof(T) * lanes);
    if (grad_bias) memcpy(grad_bias + sample * D + channel, gbias, sizeof(T) * lanes);
  }
  // Sum the B and C gradients across lanes (unused lanes hold zeros).
  for (int64_t t = 0; t < s.length; t++) {
    int64_t row = ((sample * s.length + t) * s.groups + group) * n;
    for (int64_t k = 0; k < n; k++) {
      T total_B = T(0), total_C = T(0);
      for (int w = 0; w < Width; w++) {
        total_B += lanes_B[(t * n + k) * Width + w];
        total_C += lanes_C[(t * n + k) * Width + w];
      }
      grad_B[row + k] = total_B;
      grad_C[row + k] = total_C;
    }
  }
  free(states);
  free(decays);
  free(step_deltas);
  free(step_factors);
  free(carry);
  free(lanes_B);
  free(lanes_C);
  free(lanes_A);
  free(A);
}

template <typename T>
Scan<T> make_scan(const int64_t *sizes, const int64_t *strides, const void *const *inputs, int softplus) {
  Scan<T> s;
  s.batch = sizes[0];
  s.length = sizes[1];
  s.groups = sizes[2];
  s.per_group = sizes[3];
  s.state = sizes[4];
  s.parts = sizes[5];
  s.every = sizes[6];
  s.u_batch = strides[0];
  s.u_time = strides[1];
  s.delta_batch = strides[2];
  s.delta_time = strides[3];
  s.z_batch = strides[4];
  s.z_time = strides[5];
  const T *const *p = (const T *const *)inputs;
  s.u = p[0];
  s.delta = p[1];
  s.A = p[2];
  s.B = p[3];
  s.C = p[4];
  s.D = p[5];
  s.bias = p[6];
  s.z = p[7];
  s.mask = p[8];
  s.reset = p[9];
  s.h0 = p[10];
  s.softplus = softplus;
  return s;
}

}  // namespace

// sizes: batch, length, groups, per_group, state, parts, every (0: no checkpoints)
// strides: u (batch, time), delta (batch, time), z (batch, time)
// inputs: u, delta, A, B, C, D, bias, z, mask, reset, h0 (optional ones NULL)
// outputs: out, last (or NULL), checkpoints (or NULL)
extern "C" {

int vlmamba_scan_abi_version(void) { return 2; }

// Whether the library was built with OpenMP: it then runs its items on the process's OpenMP threads (torch's, when
// torch loaded libgomp first), and the caller passes the whole range with the thread count.
int vlmamba_scan_openmp(void) {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}

void vlmamba_scan_forward_f32(const int64_t *sizes, const int64_t *strides, const void *const *inputs, int softplus,
                              void *const *outputs, int64_t item_begin, int64_t item_end, int threads) {
  Scan<float> s = make_scan<float>(sizes, strides, inputs, softplus);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = item_begin; item < item_end; item++)
    forward_item<float, 16>(s, item, (float *)outputs[0], (float *)outputs[1], (float *)outputs[2]);
}

void vlmamba_scan_forward_f64(const int64_t *sizes, const int64_t *strides, const void *const *inputs, int softplus,
                              void *const *outputs, int64_t item_begin, int64_t item_end, int threads) {
  Scan<double> s = make_scan<double>(sizes, strides, inputs, softplus);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = item_begin; item < item_end; item++)
    forward_item<double, 8>(s, item, (double *)outputs[0], (double *)outputs[1], (double *)outputs[2]);
}

// grads: grad_out, grad_last (or NULL), checkpoints, then the Grads fields in order.
void vlmamba_scan_backward_f32(const int64_t *sizes, const int64_t *strides, const void *const *inputs, int softplus,
                               void *const *grads, int64_t item_begin, int64_t item_end, int threads) {
  Scan<float> s = make_scan<float>(sizes, strides, inputs, softplus);
  Grads g = {grads[3], grads[4], grads[5], grads[6], grads[7], grads[8], grads[9], grads[10], grads[11]};
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = item_begin; item < item_end; item++)
    backward_item<float, 16>(s, item, (const float *)grads[0], (const float *)grads[1], (const float *)grads[2], g);
}

void vlmamba_scan_backward_f64(const int64_t *sizes, const int64_t *strides, const void *const *inputs, int softplus,
                               void *const *grads, int64_t item_begin, int64_t item_end, int threads) {
  Scan<double> s = make_scan<double>(sizes, strides, inputs, softplus);
  Grads g = {grads[3], grads[4], grads[5], grads[6], grads[7], grads[8], grads[9], grads[10], grads[11]};
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = item_begin; item < item_end; item++)
    backward_item<double, 8>(s, item, (const double *)grads[0], (const double *)grads[1], (const double *)grads[2],
                             g);
}

}  // extern "C"
"""

__all__ = ["CPP_SOURCE"]
