// The training LM head's softmax over one block of logits (rows x a vocabulary slice), forward and backward, one
// pass per row in cache (r1lab/rl/fused_head.py runs the matmuls and calls these per block).
//
// Why: the same math as torch ops (fp32 copy of the block, subtract, exp, sums; in the backward exp, multiply,
// scatter, a cast back) makes ~six passes over a few-MB block that has left L2 by the next one; measured on 2
// cores, those ops cost a third of the head's time. Here a row (a few kB) is read once for its max and once for
// the exp, and the backward writes the block's gradient in the logits' dtype directly.
//
// Forward (online logsumexp across the blocks of a row): peak, total = sum exp(z - peak), weighted = sum exp(z -
// peak) z (for the entropy) are merged into the running values; token_z takes z at the row's token when it lies in
// this block. z = logits * inv_temperature. Backward: d logp / dz = onehot - p, d entropy / dz = -p (z - E_p[z]), so
// the block's gradient is (onehot g - p (g + g_entropy (z - E_z))) * inv_temperature, p = exp(z - lse).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "vec_math.h"

namespace {

inline float widen(float x) { return x; }
inline float widen(c10::BFloat16 x) { return r1lab::bf16_to_float(x.x); }
inline void store(float* out, float v) { *out = v; }
inline void store(c10::BFloat16* out, float v) { out->x = r1lab::float_to_bf16(v); }

bool present(const torch::Tensor& t) { return t.defined() && t.numel() > 0; }

void check_rows(const torch::Tensor& t, int64_t rows, const char* name) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == rows && t.is_contiguous(), "head_logprobs: ", name, " must be (R,) contiguous");
}

void check_logits(const torch::Tensor& logits, const torch::Tensor& tokens) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous() &&
                  (logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kBFloat16),
              "head_logprobs: logits must be a contiguous (R, V) fp32 or bf16 tensor");
  TORCH_CHECK(tokens.scalar_type() == at::kLong, "head_logprobs: tokens must be int64");
  check_rows(tokens, logits.size(0), "tokens");
}

template <typename T>
void stats_rows(const T* logits, int64_t V, const int64_t* tokens, float inv_t, float* peak, float* total,
                float* weighted, float* token_z, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* row = logits + r * V;
    float max = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max)
    for (int64_t i = 0; i < V; ++i) max = std::max(max, widen(row[i]) * inv_t);
    const float new_peak = std::max(peak[r], max);
    float sum = 0.f, sum_z = 0.f;
    if (weighted != nullptr) {
#pragma omp simd reduction(+ : sum, sum_z)
      for (int64_t i = 0; i < V; ++i) {
        const float z = widen(row[i]) * inv_t;
        const float e = r1lab::exp_nonpositive(z - new_peak);
        sum += e;
        sum_z += e * z;
      }
    } else {
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < V; ++i) sum += r1lab::exp_nonpositive(widen(row[i]) * inv_t - new_peak);
    }
    const float rescale = r1lab::exp_nonpositive(peak[r] - new_peak);  // 0 for the first block (peak -inf)
    total[r] = total[r] * rescale + sum;
    if (weighted != nullptr) weighted[r] = weighted[r] * rescale + sum_z;
    peak[r] = new_peak;
    if (tokens[r] >= 0) token_z[r] = widen(row[tokens[r]]) * inv_t;
  }
}

// Merges one block into the running per-row statistics, in place.
void block_stats(torch::Tensor logits, torch::Tensor tokens, double inv_temperature, torch::Tensor peak,
                 torch::Tensor total, torch::Tensor weighted, torch::Tensor token_z) {
  check_logits(logits, tokens);
  const int64_t R = logits.size(0), V = logits.size(1);
  for (auto* t : {&peak, &total, &token_z}) {
    TORCH_CHECK(t->scalar_type() == at::kFloat, "head_logprobs: running statistics must be fp32");
    check_rows(*t, R, "running statistics");
  }
  if (present(weighted)) check_rows(weighted, R, "weighted");
  float* w = present(weighted) ? weighted.data_ptr<float>() : nullptr;
  const float inv_t = static_cast<float>(inv_temperature);
  auto run = [&](auto* data) {
    at::parallel_for(0, R, 1, [&](int64_t begin, int64_t end) {
      stats_rows(data, V, tokens.data_ptr<int64_t>(), inv_t, peak.data_ptr<float>(), total.data_ptr<float>(), w,
                 token_z.data_ptr<float>(), begin, end);
    });
  };
  if (logits.scalar_type() == at::kFloat) run(logits.data_ptr<float>());
  else run(logits.data_ptr<c10::BFloat16>());
}

template <typename T>
void grad_rows(const T* logits, int64_t V, const int64_t* tokens, float inv_t, const float* lse, const float* g,
               const float* g_entropy, const float* expected_z, T* out, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const T* row = logits + r * V;
    T* dst = out + r * V;
    const float shift = lse[r], gr = g[r];
    if (g_entropy != nullptr) {
      const float ge = g_entropy[r], ez = expected_z[r];
#pragma omp simd
      for (int64_t i = 0; i < V; ++i) {
        const float z = widen(row[i]) * inv_t;
        store(dst + i, -r1lab::exp_nonpositive(z - shift) * (gr + ge * (z - ez)) * inv_t);
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < V; ++i)
        store(dst + i, -r1lab::exp_nonpositive(widen(row[i]) * inv_t - shift) * gr * inv_t);
    }
    if (tokens[r] >= 0) {  // recomputed, not read back: dst may be bf16
      const int64_t t = tokens[r];
      const float z = widen(row[t]) * inv_t;
      const float p = r1lab::exp_nonpositive(z - shift);
      const float entropy_part = g_entropy != nullptr ? g_entropy[r] * (z - expected_z[r]) : 0.f;
      store(dst + t, (gr - p * (gr + entropy_part)) * inv_t);
    }
  }
}

// The block's gradient with respect to its logits, (R, V) in the logits' dtype.
torch::Tensor block_grad(torch::Tensor logits, torch::Tensor tokens, double inv_temperature, torch::Tensor lse,
                         torch::Tensor g, torch::Tensor g_entropy, torch::Tensor expected_z) {
  check_logits(logits, tokens);
  const int64_t R = logits.size(0), V = logits.size(1);
  for (auto* t : {&lse, &g}) {
    TORCH_CHECK(t->scalar_type() == at::kFloat, "head_logprobs: lse and g must be fp32");
    check_rows(*t, R, "lse / g");
  }
  const bool entropy = present(g_entropy);
  if (entropy) {
    check_rows(g_entropy, R, "g_entropy");
    check_rows(expected_z, R, "expected_z");
  }
  auto out = torch::empty_like(logits);
  const float inv_t = static_cast<float>(inv_temperature);
  const float* ge = entropy ? g_entropy.data_ptr<float>() : nullptr;
  const float* ez = entropy ? expected_z.data_ptr<float>() : nullptr;
  auto run = [&](auto* data, auto* dst) {
    at::parallel_for(0, R, 1, [&](int64_t begin, int64_t end) {
      grad_rows(data, V, tokens.data_ptr<int64_t>(), inv_t, lse.data_ptr<float>(), g.data_ptr<float>(), ge, ez, dst,
                begin, end);
    });
  };
  if (logits.scalar_type() == at::kFloat) run(logits.data_ptr<float>(), out.data_ptr<float>());
  else run(logits.data_ptr<c10::BFloat16>(), out.data_ptr<c10::BFloat16>());
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("block_stats", &block_stats, "merge a block of logits into running per-row softmax statistics (in place)");
  m.def("block_grad", &block_grad, "a block's log-prob (and entropy) gradient with respect to its logits");
}
