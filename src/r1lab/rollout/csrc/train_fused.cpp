// The training pass's fused elementwise ops, forward and backward (rl/fused_ops.py swaps them in): RMSNorm and
// the MLP's silu(gate) * up.
//
// Why: HF's RMSNorm is five ops forward (fp32 copy, pow, mean, rsqrt-multiply, weight-multiply) and about ten in
// the backward, each a pass over the (tokens, hidden) activation; under bf16 autocast each of the norm's consumers
// (q, k, v projections; gate, up) also casts its fp32 output to bf16 on its own, and casts its gradient back.
// Profiled on 2 cores (SmolLM2, GRPO config a) those were ~10 % of the pass. Here the forward writes the output
// in the consumers' dtype once, and the backward is one pass a row plus a per-thread weight-gradient sum.
//
// y = w * x * rstd, rstd = 1 / sqrt(mean(x^2) + eps), in fp32 (then rounded to bf16 if asked), as HF computes it.
// dx = rstd * (g w - x_hat * mean(g w x_hat)), dw = sum over rows of g x_hat, x_hat = x * rstd.
//
// silu(gate) * up is three ops forward (silu, multiply; each a bf16 pass under autocast) and four backward; here one
// pass each way, in fp32 registers, rounded once: h = gate s up, s = sigmoid(gate);
// d up = g gate s, d gate = g up s (1 + gate (1 - s)).
//
// RoPE (HF's rotate-half form) is seven ops on q and seven on k forward, each a pass over (tokens, heads, dim),
// and as many backward; q and k arrive in bf16 under autocast and leave in fp32 (cos and sin are fp32). Here one
// pass each way: with h = D / 2, out_i = x_i c_i - x_{i+h} s_i and out_{i+h} = x_{i+h} c_{i+h} + x_i s_{i+h};
// dx_i = g_i c_i + g_{i+h} s_{i+h} and dx_{i+h} = g_{i+h} c_{i+h} - g_i s_i, in fp32, rounded once to x's dtype.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

#include "vec_math.h"

namespace {

inline float widen(float x) { return x; }
inline float widen(c10::BFloat16 x) { return r1lab::bf16_to_float(x.x); }
inline void store(float* out, float v) { *out = v; }
inline void store(c10::BFloat16* out, float v) { out->x = r1lab::float_to_bf16(v); }

void check(const torch::Tensor& x, const torch::Tensor& weight) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.scalar_type() == at::kFloat, "rms_norm: x (N, H) fp32 contiguous");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(1) && weight.is_contiguous() &&
                  weight.scalar_type() == at::kFloat, "rms_norm: weight (H,) fp32 contiguous");
}

// Returns (y in fp32 or bf16, rstd (N,) fp32).
std::tuple<torch::Tensor, torch::Tensor> rms_norm_forward(torch::Tensor x, torch::Tensor weight, double eps, bool bf16_out) {
  check(x, weight);
  const int64_t N = x.size(0), H = x.size(1);
  auto y = torch::empty({N, H}, x.options().dtype(bf16_out ? at::kBFloat16 : at::kFloat));
  auto rstd = torch::empty({N}, x.options());
  const float* xs = x.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  float* r = rstd.data_ptr<float>();
  auto run = [&](auto* out) {
    at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const float* row = xs + n * H;
        float squares = 0.f;
#pragma omp simd reduction(+ : squares)
        for (int64_t i = 0; i < H; ++i) squares += row[i] * row[i];
        const float scale = 1.f / std::sqrt(squares / static_cast<float>(H) + static_cast<float>(eps));
        r[n] = scale;
        auto* dst = out + n * H;
#pragma omp simd
        for (int64_t i = 0; i < H; ++i) store(dst + i, w[i] * (row[i] * scale));
      }
    });
  };
  if (bf16_out) run(y.data_ptr<c10::BFloat16>());
  else run(y.data_ptr<float>());
  return {y, rstd};
}

// Returns (dx (N, H) fp32, dw (H,) fp32); grad_y fp32 or bf16.
std::tuple<torch::Tensor, torch::Tensor> rms_norm_backward(torch::Tensor grad_y, torch::Tensor x, torch::Tensor weight,
                                                           torch::Tensor rstd) {
  check(x, weight);
  const int64_t N = x.size(0), H = x.size(1);
  TORCH_CHECK(grad_y.dim() == 2 && grad_y.size(0) == N && grad_y.size(1) == H && grad_y.is_contiguous() &&
                  (grad_y.scalar_type() == at::kFloat || grad_y.scalar_type() == at::kBFloat16),
              "rms_norm: grad_y (N, H) fp32 or bf16 contiguous");
  TORCH_CHECK(rstd.dim() == 1 && rstd.size(0) == N && rstd.scalar_type() == at::kFloat, "rms_norm: rstd (N,) fp32");
  auto dx = torch::empty_like(x);
  const int threads = at::get_num_threads();
  std::vector<float> partial(static_cast<size_t>(threads) * H, 0.f);  // dw per thread, summed after
  const float* xs = x.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  const float* r = rstd.data_ptr<float>();
  float* d = dx.data_ptr<float>();
  auto run = [&](auto* g) {
    at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
      float* dw = partial.data() + static_cast<size_t>(at::get_thread_num()) * H;
      for (int64_t n = begin; n < end; ++n) {
        const float* row = xs + n * H;
        const auto* grow = g + n * H;
        const float scale = r[n];
        float dot = 0.f;  // sum of g w x_hat
#pragma omp simd reduction(+ : dot)
        for (int64_t i = 0; i < H; ++i) {
          const float gi = widen(grow[i]), xh = row[i] * scale;
          dot += gi * w[i] * xh;
          dw[i] += gi * xh;
        }
        const float mean = dot / static_cast<float>(H);
        float* drow = d + n * H;
#pragma omp simd
        for (int64_t i = 0; i < H; ++i) drow[i] = scale * (widen(grow[i]) * w[i] - row[i] * scale * mean);
      }
    });
  };
  if (grad_y.scalar_type() == at::kFloat) run(grad_y.data_ptr<float>());
  else run(grad_y.data_ptr<c10::BFloat16>());
  auto dweight = torch::zeros({H}, x.options());
  float* total = dweight.data_ptr<float>();
  for (int t = 0; t < threads; ++t)
    for (int64_t i = 0; i < H; ++i) total[i] += partial[static_cast<size_t>(t) * H + i];
  return {dx, dweight};
}

void check_pair(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  TORCH_CHECK(a.is_contiguous() && b.is_contiguous() && a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
                  (a.scalar_type() == at::kFloat || a.scalar_type() == at::kBFloat16),
              "silu_mul: ", what, " must be contiguous fp32 or bf16 tensors of one shape and dtype");
}

inline float sigmoid(float x) {
  const float e = r1lab::exp_nonpositive(-std::abs(x));
  return (x >= 0.f ? 1.f : e) / (1.f + e);
}

torch::Tensor silu_mul_forward(torch::Tensor gate, torch::Tensor up) {
  check_pair(gate, up, "gate and up");
  auto out = torch::empty_like(gate);
  const int64_t n = gate.numel();
  auto run = [&](auto* g, auto* u, auto* o) {
    at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        const float x = widen(g[i]);
        store(o + i, x * sigmoid(x) * widen(u[i]));
      }
    });
  };
  if (gate.scalar_type() == at::kFloat) run(gate.data_ptr<float>(), up.data_ptr<float>(), out.data_ptr<float>());
  else run(gate.data_ptr<c10::BFloat16>(), up.data_ptr<c10::BFloat16>(), out.data_ptr<c10::BFloat16>());
  return out;
}

// Returns (d gate, d up) in the inputs' dtype.
std::tuple<torch::Tensor, torch::Tensor> silu_mul_backward(torch::Tensor grad, torch::Tensor gate, torch::Tensor up) {
  check_pair(gate, up, "gate and up");
  check_pair(grad, gate, "grad and gate");
  auto d_gate = torch::empty_like(gate), d_up = torch::empty_like(up);
  const int64_t n = gate.numel();
  auto run = [&](auto* dy, auto* g, auto* u, auto* dg, auto* du) {
    at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        const float x = widen(g[i]), y = widen(dy[i]), s = sigmoid(x);
        store(du + i, y * x * s);
        store(dg + i, y * widen(u[i]) * s * (1.f + x * (1.f - s)));
      }
    });
  };
  if (gate.scalar_type() == at::kFloat)
    run(grad.data_ptr<float>(), gate.data_ptr<float>(), up.data_ptr<float>(), d_gate.data_ptr<float>(),
        d_up.data_ptr<float>());
  else
    run(grad.data_ptr<c10::BFloat16>(), gate.data_ptr<c10::BFloat16>(), up.data_ptr<c10::BFloat16>(),
        d_gate.data_ptr<c10::BFloat16>(), d_up.data_ptr<c10::BFloat16>());
  return {d_gate, d_up};
}

void check_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && x.size(3) % 2 == 0 &&
                  (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16),
              "rope: x (B, S, H, D) contiguous fp32 or bf16 with D even");
  for (const auto* t : {&cos, &sin})
    TORCH_CHECK(t->dim() == 3 && t->is_contiguous() && t->scalar_type() == at::kFloat && t->size(1) == x.size(1) &&
                    t->size(2) == x.size(3) && (t->size(0) == 1 || t->size(0) == x.size(0)),
                "rope: cos and sin (1 or B, S, D) contiguous fp32");
}

// Runs body(x row, cos row, sin row, out row) over the (B, S, H) rows of D values.
template <typename In, typename Out, typename Body>
void for_each_rope_row(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, const In* xs,
                       Out* out, Body body) {
  const int64_t B = x.size(0), S = x.size(1), H = x.size(2), D = x.size(3);
  const bool shared = cos.size(0) == 1;
  const float* c = cos.data_ptr<float>();
  const float* s = sin.data_ptr<float>();
  at::parallel_for(0, B * S, 8, [&](int64_t begin, int64_t end) {
    for (int64_t bs = begin; bs < end; ++bs) {
      const int64_t table = (shared ? bs % S : bs) * D;
      for (int64_t h = 0; h < H; ++h) body(xs + (bs * H + h) * D, c + table, s + table, out + (bs * H + h) * D, D / 2);
    }
  });
}

// x (B, S, H, D) fp32 or bf16 -> fp32 (B, S, H, D).
torch::Tensor rope_forward(torch::Tensor x, torch::Tensor cos, torch::Tensor sin) {
  check_rope(x, cos, sin);
  auto out = torch::empty(x.sizes(), x.options().dtype(at::kFloat));
  auto run = [&](const auto* xs) {
    for_each_rope_row(x, cos, sin, xs, out.data_ptr<float>(), [](const auto* r, const float* c, const float* s, float* o,
                                                                 int64_t half) {
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        const float lo = widen(r[i]), hi = widen(r[i + half]);
        o[i] = lo * c[i] - hi * s[i];
        o[i + half] = hi * c[i + half] + lo * s[i + half];
      }
    });
  };
  if (x.scalar_type() == at::kFloat) run(x.data_ptr<float>());
  else run(x.data_ptr<c10::BFloat16>());
  return out;
}

// grad (B, S, H, D) fp32 -> dx in fp32 or bf16 (x's dtype).
torch::Tensor rope_backward(torch::Tensor grad, torch::Tensor cos, torch::Tensor sin, bool bf16_out) {
  check_rope(grad, cos, sin);
  TORCH_CHECK(grad.scalar_type() == at::kFloat, "rope: grad fp32");
  auto dx = torch::empty(grad.sizes(), grad.options().dtype(bf16_out ? at::kBFloat16 : at::kFloat));
  auto run = [&](auto* d) {
    for_each_rope_row(grad, cos, sin, grad.data_ptr<float>(), d, [](const float* g, const float* c, const float* s,
                                                                    auto* o, int64_t half) {
#pragma omp simd
      for (int64_t i = 0; i < half; ++i) {
        store(o + i, g[i] * c[i] + g[i + half] * s[i + half]);
        store(o + i + half, g[i + half] * c[i + half] - g[i] * s[i]);
      }
    });
  };
  if (bf16_out) run(dx.data_ptr<c10::BFloat16>());
  else run(dx.data_ptr<float>());
  return dx;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rms_norm_forward", &rms_norm_forward, "RMSNorm forward: (y, rstd)");
  m.def("rms_norm_backward", &rms_norm_backward, "RMSNorm backward: (dx, dw)");
  m.def("silu_mul_forward", &silu_mul_forward, "silu(gate) * up");
  m.def("silu_mul_backward", &silu_mul_backward, "silu(gate) * up backward: (d gate, d up)");
  m.def("rope_forward", &rope_forward, "rotate-half RoPE, fp32 out");
  m.def("rope_backward", &rope_backward, "rotate-half RoPE backward");
}
