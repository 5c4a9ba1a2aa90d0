// Decode-step attention over the native engine's slot KV cache (fp32 or bf16 K/V, fp32 math), one task per
// (row, KV head).
//
// Why not torch.bmm: a decode step is B * Hkv tiny (G x D) @ (D x T) products on strided cache
// views; MKL pays a fixed cost per matrix and the step ends up 3-4x slower than reading the cache
// once. Here each key and value row is read once for all G query heads that share it (grouped-query
// attention), the mask is the row's own range [lo, position], and the threads split the
// (row, KV head) pairs through ATen's pool (torch.set_num_threads applies).

// ATen's vector types for this machine's widest units (the build passes -march=native).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define CPU_CAPABILITY_AVX512
#define CPU_CAPABILITY AVX512
#elif defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY_AVX2
#define CPU_CAPABILITY AVX2
#endif
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kGroupBlock = 8;  // query heads per KV head handled in registers at once

// Vec::size() cache entries as floats: bf16 K/V halve the bytes a step reads and widen to fp32 here.
inline Vec load_row(const float* p) { return Vec::loadu(p); }
inline Vec load_row(const c10::BFloat16* p) {
  Vec out;
  at::vec::load_to_float(p, out);
  return out;
}

// scores[g * n + t] = alpha * <q_g, k_t> for g < G (G <= kGroupBlock): each key row is loaded once.
template <typename KV>
inline void block_scores(const float* q, int64_t G, const KV* keys, int64_t stride, int64_t n, int64_t D,
                         float alpha, float* scores, int64_t scores_stride) {
  const int64_t W = Vec::size(), full = D - D % W;
  for (int64_t t = 0; t < n; ++t) {
    const KV* key = keys + t * stride;
    Vec acc[kGroupBlock];
    for (int64_t g = 0; g < G; ++g) acc[g] = Vec(0.f);
    for (int64_t d = 0; d < full; d += W) {
      const Vec kd = load_row(key + d);
      for (int64_t g = 0; g < G; ++g) acc[g] = at::vec::fmadd(Vec::loadu(q + g * D + d), kd, acc[g]);
    }
    for (int64_t g = 0; g < G; ++g) {
      float sum = at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, acc[g]);
      for (int64_t d = full; d < D; ++d) sum += q[g * D + d] * static_cast<float>(key[d]);
      scores[g * scores_stride + t] = alpha * sum;
    }
  }
}

// out_g = sum_t p[g, t] v_t for g < G (G <= kGroupBlock), each value row loaded once per D chunk.
template <typename KV>
inline void block_values(const float* p, int64_t p_stride, int64_t G, const KV* values, int64_t stride,
                         int64_t n, int64_t D, float* out) {
  const int64_t W = Vec::size(), full = D - D % W;
  for (int64_t d = 0; d < full; d += W) {
    Vec acc[kGroupBlock];
    for (int64_t g = 0; g < G; ++g) acc[g] = Vec(0.f);
    for (int64_t t = 0; t < n; ++t) {
      const Vec vd = load_row(values + t * stride + d);
      for (int64_t g = 0; g < G; ++g) acc[g] = at::vec::fmadd(Vec(p[g * p_stride + t]), vd, acc[g]);
    }
    for (int64_t g = 0; g < G; ++g) acc[g].store(out + g * D + d);
  }
  for (int64_t d = full; d < D; ++d)
    for (int64_t g = 0; g < G; ++g) {
      float sum = 0.f;
      for (int64_t t = 0; t < n; ++t) sum += p[g * p_stride + t] * static_cast<float>(values[t * stride + d]);
      out[g * D + d] = sum;
    }
}

// In place: s[0..n) -> softmax(s).
inline void softmax(float* s, int64_t n) {
  const float top = at::vec::reduce_all<float>([](Vec& a, Vec& b) { return at::vec::maximum(a, b); }, s, n);
  at::vec::map([top](Vec x) { return (x - Vec(top)).exp_u20(); }, s, s, n);
  const float total = at::vec::reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, s, n);
  const float inv = 1.f / total;
  at::vec::map([inv](Vec x) { return x * Vec(inv); }, s, s, n);
}

// The (row, KV head) tasks over K/V stored as KV; q and out are fp32 (B, H, D).
template <typename KV>
void attend(const float* qp, const KV* kp, const KV* vp, const int64_t* pos, float* op, int64_t B, int64_t H,
            int64_t Hkv, int64_t D, int64_t s_slot, int64_t s_head, int64_t s_pos, int64_t window, float alpha) {
  const int64_t G = H / Hkv;
  at::parallel_for(0, B * Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / Hkv, h = task % Hkv, last = pos[b];
      const int64_t lo = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0, n = last - lo + 1;
      scores.resize(G * n);
      const float* qs = qp + (b * H + h * G) * D;  // the G query heads of KV head h, rows of D
      const KV* keys = kp + b * s_slot + h * s_head + lo * s_pos;
      const KV* values = vp + b * s_slot + h * s_head + lo * s_pos;
      float* o = op + (b * H + h * G) * D;
      for (int64_t g0 = 0; g0 < G; g0 += kGroupBlock) {
        const int64_t gs = std::min(kGroupBlock, G - g0);
        block_scores(qs + g0 * D, gs, keys, s_pos, n, D, alpha, scores.data() + g0 * n, n);
        for (int64_t g = g0; g < g0 + gs; ++g) softmax(scores.data() + g * n, n);
        block_values(scores.data() + g0 * n, n, gs, values, s_pos, n, D, o + g0 * D);
      }
    }
  });
}

// q: (B, H, D) fp32; k, v: (S, Hkv, L, D) fp32 or bf16 (both the same) with unit stride in D (S >= B: the
// first B slots run); positions: (B,) int64, the query's own position (its key is already written);
// window > 0: keys older than `window` positions are hidden (HF: q - window < k <= q).
torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor positions,
                               int64_t window, double scale) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 4 && v.dim() == 4, "decode_attention: q (B, H, D), k/v (S, Hkv, L, D)");
  TORCH_CHECK(q.scalar_type() == at::kFloat, "decode_attention: fp32 q");
  TORCH_CHECK((k.scalar_type() == at::kFloat || k.scalar_type() == at::kBFloat16) && v.scalar_type() == k.scalar_type(),
              "decode_attention: k and v both fp32 or both bf16");
  TORCH_CHECK(positions.scalar_type() == at::kLong && positions.dim() == 1, "decode_attention: int64 positions (B,)");
  TORCH_CHECK(k.stride(3) == 1 && v.stride(3) == 1 && k.strides() == v.strides(), "decode_attention: k/v layout");
  q = q.contiguous();
  positions = positions.contiguous();
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), Hkv = k.size(1), L = k.size(2);
  TORCH_CHECK(H % Hkv == 0 && k.size(3) == D && k.size(0) >= B && positions.size(0) == B,
              "decode_attention: shapes do not match");
  const int64_t* pos = positions.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) TORCH_CHECK(pos[b] >= 0 && pos[b] < L, "decode_attention: position outside the cache");
  auto out = torch::empty_like(q);
  const float alpha = static_cast<float>(scale);
  if (k.scalar_type() == at::kFloat)
    attend(q.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>(), pos, out.data_ptr<float>(), B, H, Hkv, D,
           k.stride(0), k.stride(1), k.stride(2), window, alpha);
  else
    attend(q.data_ptr<float>(), k.data_ptr<c10::BFloat16>(), v.data_ptr<c10::BFloat16>(), pos, out.data_ptr<float>(),
           B, H, Hkv, D, k.stride(0), k.stride(1), k.stride(2), window, alpha);
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_attention", &decode_attention, "decode-step attention over a slot KV cache (fp32 or bf16 K/V)");
}
