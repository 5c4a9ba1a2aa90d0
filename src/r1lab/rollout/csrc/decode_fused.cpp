// The elementwise parts of a decode step, fused: RMSNorm (with the residual add before it), RoPE with the
// K/V cache write, and SiLU(gate) * up.
//
// Why: at decode batch sizes these tensors are a few KB, so each torch op costs its dispatch, not its
// arithmetic. SmolLM2's layer was ~45 such ops around 4 matmuls (profiled at batch 1: the matmuls were a
// third of the step). Each function here replaces 5-15 of them with one call. Math is fp32 with a single
// rounding to the output dtype at the end, so in bf16 the results differ from the unfused ops' (which round
// after every op) by bf16 rounding; fp32 results differ by summation order only. The engine uses these
// where it does not promise transformers' exact numbers (bf16, int8): forward.py decides.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <tuple>

#include "row_slots.h"
#include "vec_math.h"

namespace {

template <typename T>
inline float widen(T x) { return static_cast<float>(x); }

// Row-wise RMSNorm over C, in the order of the family's own module:
// cast_first (Llama): w * (x * rsqrt(mean(x^2) + eps)).to(dtype); otherwise (OLMo 2, Gemma): (x * rsqrt(...) * w).to(dtype).
template <typename T, typename W>
inline void norm_row(const T* x, const W* w, T* out, int64_t C, float eps, bool cast_first) {
  float sum = 0.f;
  for (int64_t c = 0; c < C; ++c) {
    const float v = widen(x[c]);
    sum += v * v;
  }
  const float inv = 1.f / std::sqrt(sum / static_cast<float>(C) + eps);
  if (cast_first) {
    for (int64_t c = 0; c < C; ++c) out[c] = static_cast<T>(widen(static_cast<T>(widen(x[c]) * inv)) * widen(w[c]));
  } else {
    for (int64_t c = 0; c < C; ++c) out[c] = static_cast<T>(widen(x[c]) * inv * widen(w[c]));
  }
}

template <typename T, typename W>
void norm_rows(T* x, const T* branch, const W* w, T* out, int64_t B, int64_t C, float eps, bool cast_first) {
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      T* row = x + b * C;
      if (branch != nullptr)
        for (int64_t c = 0; c < C; ++c) row[c] = static_cast<T>(widen(row[c]) + widen(branch[b * C + c]));
      norm_row(row, w, out + b * C, C, eps, cast_first);
    }
  });
}

void check_rows(const torch::Tensor& x, const char* what) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              what, ": a contiguous (B, C) fp32 or bf16 tensor");
}

// x: (B, C); branch: (B, C) or undefined; weight: (C,) fp32 or x's dtype. With a branch, x += branch in place
// first (the residual add). Returns the normed rows.
torch::Tensor add_rms_norm(torch::Tensor x, c10::optional<torch::Tensor> branch, torch::Tensor weight, double eps,
                           bool cast_first) {
  check_rows(x, "add_rms_norm x");
  const int64_t B = x.size(0), C = x.size(1);
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == C && weight.is_contiguous(), "add_rms_norm: weight (C,)");
  torch::Tensor extra;
  if (branch.has_value()) {
    extra = branch->contiguous();
    TORCH_CHECK(extra.sizes() == x.sizes() && extra.scalar_type() == x.scalar_type(), "add_rms_norm: branch like x");
  }
  auto out = torch::empty_like(x);
  const float e = static_cast<float>(eps);
  auto run = [&](auto* xp, auto* wp) {
    using T = std::remove_pointer_t<decltype(xp)>;
    norm_rows(xp, extra.defined() ? extra.data_ptr<T>() : nullptr, wp, out.data_ptr<T>(), B, C, e, cast_first);
  };
  const bool wide = weight.scalar_type() == at::kFloat;
  TORCH_CHECK(wide || weight.scalar_type() == x.scalar_type(), "add_rms_norm: weight fp32 or x's dtype");
  if (x.scalar_type() == at::kFloat) run(x.data_ptr<float>(), weight.data_ptr<float>());
  else if (wide) run(x.data_ptr<c10::BFloat16>(), weight.data_ptr<float>());
  else run(x.data_ptr<c10::BFloat16>(), weight.data_ptr<c10::BFloat16>());
  return out;
}

// One head of D: the first R dims rotate (out_i = x_i cos_i - x_{i+R/2} sin_i, out_{i+R/2} = x_{i+R/2} cos + x_i sin,
// HF's rotate_half), the rest pass through.
template <typename T, typename O, typename R>
inline void rotate(const T* x, const R* cos, const R* sin, O* out, int64_t D, int64_t rotary) {
  const int64_t half = rotary / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = widen(x[i]), b = widen(x[i + half]);
    out[i] = static_cast<O>(a * widen(cos[i]) - b * widen(sin[i]));
    out[i + half] = static_cast<O>(b * widen(cos[i + half]) + a * widen(sin[i + half]));
  }
  for (int64_t i = rotary; i < D; ++i) out[i] = static_cast<O>(widen(x[i]));
}

template <typename T, typename KV>
void rope_rows(const T* q, const T* k, const T* v, int64_t row_q, int64_t row_k, int64_t row_v, const T* cos,
               const T* sin, int64_t rotary, const int64_t* pos, const int64_t* slot, KV* ck, KV* cv, int64_t s_slot, int64_t s_head,
               int64_t s_pos, float* out, int64_t B, int64_t H, int64_t Hkv, int64_t D) {
  at::parallel_for(0, B, 8, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const T* c = cos + pos[b] * rotary;
      const T* s = sin + pos[b] * rotary;
      for (int64_t h = 0; h < H; ++h) rotate(q + b * row_q + h * D, c, s, out + (b * H + h) * D, D, rotary);
      for (int64_t h = 0; h < Hkv; ++h) {
        const int64_t at = r1lab::slot_of(slot, b) * s_slot + h * s_head + pos[b] * s_pos;
        rotate(k + b * row_k + h * D, c, s, ck + at, D, rotary);
        for (int64_t d = 0; d < D; ++d) cv[at + d] = static_cast<KV>(widen(v[b * row_v + h * D + d]));
      }
    }
  });
}

// q: (B, H*D), k, v: (B, Hkv*D) (views of one fused projection: any row stride, unit stride inside a row);
// cos, sin: (L, R) tables in q's dtype; positions: (B,) int64; cache_k, cache_v: (S, Hkv, L, D), fp32 or bf16.
// Writes rotated k and v at each row's position in its slot (slots[b], default b); returns the rotated q as fp32
// (B, H, D), the decode-attention kernel's input.
torch::Tensor rope_into_cache(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor cos, torch::Tensor sin,
                              torch::Tensor positions, torch::Tensor cache_k, torch::Tensor cache_v,
                              c10::optional<torch::Tensor> slots) {
  const auto dtype = q.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "rope_into_cache: fp32 or bf16 q");
  for (const auto* t : {&q, &k, &v})
    TORCH_CHECK(t->dim() == 2 && t->stride(1) == 1 && t->scalar_type() == dtype, "rope_into_cache: q/k/v (B, N) rows");
  TORCH_CHECK(cos.dim() == 2 && cos.is_contiguous() && sin.sizes() == cos.sizes() && sin.is_contiguous() &&
                  cos.scalar_type() == dtype && sin.scalar_type() == dtype, "rope_into_cache: cos/sin (L, R) in q's dtype");
  TORCH_CHECK(positions.scalar_type() == at::kLong && positions.dim() == 1 && positions.is_contiguous(),
              "rope_into_cache: int64 positions (B,)");
  TORCH_CHECK(cache_k.dim() == 4 && cache_k.stride(3) == 1 && cache_k.strides() == cache_v.strides() &&
                  cache_k.scalar_type() == cache_v.scalar_type() &&
                  (cache_k.scalar_type() == at::kFloat || cache_k.scalar_type() == at::kBFloat16),
              "rope_into_cache: cache k/v (S, Hkv, L, D), fp32 or bf16");
  const int64_t B = q.size(0), Hkv = cache_k.size(1), L = cache_k.size(2), D = cache_k.size(3), R = cos.size(1);
  TORCH_CHECK(q.size(1) % D == 0 && k.size(1) == Hkv * D && v.size(1) == Hkv * D && k.size(0) == B && v.size(0) == B &&
                  positions.size(0) == B && R <= D && R % 2 == 0,
              "rope_into_cache: shapes do not match");
  const int64_t H = q.size(1) / D;
  const int64_t* pos = positions.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    TORCH_CHECK(pos[b] >= 0 && pos[b] < L && pos[b] < cos.size(0), "rope_into_cache: position outside the cache");
  const int64_t* slot = r1lab::row_slots(slots, B, cache_k.size(0), "rope_into_cache");
  auto out = torch::empty({B, H, D}, q.options().dtype(at::kFloat));
  auto run = [&](auto* qp, auto* ckp) {
    using T = std::remove_pointer_t<decltype(qp)>;
    using KV = std::remove_pointer_t<decltype(ckp)>;
    rope_rows(qp, k.data_ptr<T>(), v.data_ptr<T>(), q.stride(0), k.stride(0), v.stride(0), cos.data_ptr<T>(),
              sin.data_ptr<T>(), R, pos, slot, ckp, cache_v.data_ptr<KV>(), cache_k.stride(0), cache_k.stride(1),
              cache_k.stride(2), out.data_ptr<float>(), B, H, Hkv, D);
  };
  const bool wide_cache = cache_k.scalar_type() == at::kFloat;
  if (dtype == at::kFloat) {
    if (wide_cache) run(q.data_ptr<float>(), cache_k.data_ptr<float>());
    else run(q.data_ptr<float>(), cache_k.data_ptr<c10::BFloat16>());
  } else {
    if (wide_cache) run(q.data_ptr<c10::BFloat16>(), cache_k.data_ptr<float>());
    else run(q.data_ptr<c10::BFloat16>(), cache_k.data_ptr<c10::BFloat16>());
  }
  return out;
}

inline void silu_mul_row(const float* gate, float* out, int64_t F) {
  const float* up = gate + F;
#pragma omp simd
  for (int64_t f = 0; f < F; ++f) out[f] = r1lab::silu(gate[f]) * up[f];
}

inline void silu_mul_row(const c10::BFloat16* gate_bf16, c10::BFloat16* out_bf16, int64_t F) {
  const uint16_t* gate = reinterpret_cast<const uint16_t*>(gate_bf16);
  const uint16_t* up = gate + F;
  uint16_t* out = reinterpret_cast<uint16_t*>(out_bf16);
#pragma omp simd
  for (int64_t f = 0; f < F; ++f)
    out[f] = r1lab::float_to_bf16(r1lab::silu(r1lab::bf16_to_float(gate[f])) * r1lab::bf16_to_float(up[f]));
}

// gate_up: (B, 2F) contiguous, gate first -> (B, F) silu(gate) * up.
torch::Tensor silu_mul(torch::Tensor gate_up) {
  check_rows(gate_up, "silu_mul gate_up");
  const int64_t B = gate_up.size(0), F = gate_up.size(1) / 2;
  TORCH_CHECK(gate_up.size(1) == 2 * F, "silu_mul: an even number of columns");
  auto out = torch::empty({B, F}, gate_up.options());
  auto run = [&](auto* in) {
    using T = std::remove_pointer_t<decltype(in)>;
    T* o = out.data_ptr<T>();
    at::parallel_for(0, B, 4, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) silu_mul_row(in + b * 2 * F, o + b * F, F);
    });
  };
  if (gate_up.scalar_type() == at::kFloat) run(gate_up.data_ptr<float>());
  else run(gate_up.data_ptr<c10::BFloat16>());
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("add_rms_norm", &add_rms_norm, "[x += branch in place;] RMSNorm(x) rows, fp32 math");
  m.def("rope_into_cache", &rope_into_cache, "RoPE on q/k, k and v written into the slot cache; fp32 q back",
        pybind11::arg("q"), pybind11::arg("k"), pybind11::arg("v"), pybind11::arg("cos"), pybind11::arg("sin"),
        pybind11::arg("positions"), pybind11::arg("cache_k"), pybind11::arg("cache_v"), pybind11::arg("slots") = pybind11::none());
  m.def("silu_mul", &silu_mul, "silu(gate) * up from one fused gate/up projection");
}
