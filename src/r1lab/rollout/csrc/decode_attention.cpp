// Decode-step attention over the native engine's slot KV cache (fp32 or bf16 K/V, fp32 math), one task per
// (row, KV head).
//
// Why not torch.bmm: a decode step is B * Hkv tiny (G x D) @ (D x T) products on strided cache
// views; MKL pays a fixed cost per matrix and the step ends up 3-4x slower than reading the cache
// once. Here each key and value row is read once for all G query heads that share it (grouped-query
// attention), the mask is the row's own range [lo, position], and the threads split the
// (row, KV head) pairs through ATen's pool (torch.set_num_threads applies).
//
// bf16_dots (bf16 K/V on a CPU with AVX-512 BF16; the engine asks for it when it computes in bf16): q and the
// softmax weights are rounded to bf16 and both products run as VDPBF16PS dot products with fp32 sums, 16 keys
// at a time with one transposed reduction for their 16 scores. The per-key horizontal sums of the fp32 path
// were most of its time (measured: SmolLM2 at batch 32, ~100 positions, 0.32 ms a layer, a fifth of a bf16
// decode step). The roundings are those the unfused bf16 path has always made (q and the weights in bf16).

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
#include <cstring>
#include <limits>
#include <vector>

#include "row_slots.h"

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

// Task (row b, KV head h): its visible keys [lo, pos[b]] (n of them) start `offset` elements into K and V.
struct TaskSpan {
  int64_t b, h, n, offset;
};

inline TaskSpan task_span(const int64_t* pos, const int64_t* slot, int64_t task, int64_t Hkv, int64_t s_slot,
                          int64_t s_head, int64_t s_pos, int64_t window) {
  const int64_t b = task / Hkv, h = task % Hkv, last = pos[b];
  const int64_t lo = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
  return {b, h, last - lo + 1, r1lab::slot_of(slot, b) * s_slot + h * s_head + lo * s_pos};
}

// The (row, KV head) tasks over K/V stored as KV; q and out are fp32 (B, H, D).
template <typename KV>
void attend(const float* qp, const KV* kp, const KV* vp, const int64_t* pos, const int64_t* slot, float* op, int64_t B, int64_t H,
            int64_t Hkv, int64_t D, int64_t s_slot, int64_t s_head, int64_t s_pos, int64_t window, float alpha) {
  const int64_t G = H / Hkv;
  at::parallel_for(0, B * Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const auto [b, h, n, offset] = task_span(pos, slot, task, Hkv, s_slot, s_head, s_pos, window);
      scores.resize(G * n);
      const float* qs = qp + (b * H + h * G) * D;  // the G query heads of KV head h, rows of D
      const KV* keys = kp + offset;
      const KV* values = vp + offset;
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

#if defined(__AVX512BF16__) && defined(CPU_CAPABILITY_AVX512)
#define R1LAB_BF16_DOTS 1
constexpr int64_t kTile = 16;   // keys per score tile
constexpr int64_t kChunk = 32;  // bf16 values per 512-bit register

// r[i] = sum of v[i]'s 16 lanes, for 16 vectors: 45 shuffles and adds instead of 16 full reductions.
inline __m512 sum16(__m512* v) {
  __m512 w[8], x[4];
  for (int i = 0; i < 8; ++i)
    w[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)
    x[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 y0 = _mm512_add_ps(_mm512_shuffle_f32x4(x[0], x[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(x[0], x[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 y1 = _mm512_add_ps(_mm512_shuffle_f32x4(x[2], x[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                  _mm512_shuffle_f32x4(x[2], x[3], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(y0, y1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(y0, y1, _MM_SHUFFLE(3, 1, 3, 1)));
}

inline __m512bh load_bh(const c10::BFloat16* p) { return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p)); }

// out[0..n) = in[0..n) rounded to bf16 (nearest even, as c10 rounds), 16 at a time.
inline void round_to_bf16(const float* in, int64_t n, c10::BFloat16* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 mask = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, in + i));
    _mm256_mask_storeu_epi16(out + i, mask, reinterpret_cast<__m256i>(rounded));
  }
}

// The next task's keys and values, fetched towards L2 while this task computes: spread over its score tiles (K) and
// value pairs (V) a few lines at a time, not issued in one burst at the task's start, which overflows the core's
// queue of outstanding misses. The cache comes from memory every step; measured at batch 32, position 96 (2.4 MB of
// bf16 K/V a layer): the burst 160 us a layer (~15 GB/s), spread 99-109 us (~23 GB/s).
struct NextTask {
  const char* k = nullptr;
  const char* v = nullptr;
  int64_t bytes = 0;
};

inline int64_t ceil_lines(int64_t bytes, int64_t parts) { return parts > 0 ? (bytes / 64 + parts) / parts : 0; }

inline const char* prefetch_lines(const char* from, const char* end, int64_t lines) {
  for (int64_t i = 0; i < lines && from < end; ++i, from += 64) _mm_prefetch(from, _MM_HINT_T1);
  return from;
}

NextTask next_task(const c10::BFloat16* kp, const c10::BFloat16* vp, const TaskSpan& span, int64_t s_pos, int64_t D) {
  return {reinterpret_cast<const char*>(kp + span.offset), reinterpret_cast<const char*>(vp + span.offset),
          (span.n - 1) * s_pos * 2 + D * 2};
}

// One (row, KV head) task with bf16 dot products; D % 32 == 0, G <= kGroupBlock. qb: G rows of D bf16 (the
// rounded queries); scores: G * n floats; pb: G rows of n + 1 bf16 (the rounded weights, one zero pad).
void attend_bf16_task(const c10::BFloat16* qb, int64_t G, const c10::BFloat16* keys, const c10::BFloat16* values,
                      int64_t stride, int64_t n, int64_t D, float alpha, float* scores, c10::BFloat16* pb, float* o,
                      NextTask next) {
  const int64_t chunks = D / kChunk, padded = n + 1;
  const int64_t k_step = ceil_lines(next.bytes, (n + kTile - 1) / kTile), v_step = ceil_lines(next.bytes, (n + 1) / 2);
  const char* k_next = next.k;
  const char* v_next = next.v;
  for (int64_t t0 = 0; t0 < n; t0 += kTile) {
    k_next = prefetch_lines(k_next, next.k + next.bytes, k_step);
    const int64_t count = std::min(kTile, n - t0);
    const __mmask16 mask = count == kTile ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1);
    for (int64_t g = 0; g < G; ++g) {
      __m512 acc[kTile];
      for (int64_t t = 0; t < kTile; ++t) acc[t] = _mm512_setzero_ps();
      for (int64_t c = 0; c < chunks; ++c) {
        const __m512bh qc = load_bh(qb + g * D + c * kChunk);
        const c10::BFloat16* key = keys + t0 * stride + c * kChunk;
        if (count == kTile) {  // a constant trip count keeps the 16 accumulators in registers
          for (int64_t t = 0; t < kTile; ++t) acc[t] = _mm512_dpbf16_ps(acc[t], qc, load_bh(key + t * stride));
        } else {
          for (int64_t t = 0; t < count; ++t) acc[t] = _mm512_dpbf16_ps(acc[t], qc, load_bh(key + t * stride));
        }
      }
      _mm512_mask_storeu_ps(scores + g * n + t0, mask, _mm512_mul_ps(sum16(acc), _mm512_set1_ps(alpha)));
    }
  }
  for (int64_t g = 0; g < G; ++g) {
    float* s = scores + g * n;
    softmax(s, n);
    round_to_bf16(s, n, pb + g * padded);
    pb[g * padded + n] = static_cast<c10::BFloat16>(0.f);
  }
  // Values two keys at a time: interleaving rows t and t + 1 gives (v_t[d], v_t+1[d]) pairs against the
  // broadcast weight pair (p_t, p_t+1). unpacklo/hi_epi16 take dims 0-3 / 4-7 of each 8 in a 128-bit lane.
  for (int64_t c = 0; c < chunks; ++c) {
    __m512 lo[kGroupBlock], hi[kGroupBlock];
    for (int64_t g = 0; g < G; ++g) lo[g] = hi[g] = _mm512_setzero_ps();
    for (int64_t t = 0; t < n; t += 2) {
      if (c == 0) v_next = prefetch_lines(v_next, next.v + next.bytes, v_step);
      const __m512i a = _mm512_loadu_si512(values + t * stride + c * kChunk);
      const __m512i b = t + 1 < n ? _mm512_loadu_si512(values + (t + 1) * stride + c * kChunk) : _mm512_setzero_si512();
      const __m512bh pair_lo = reinterpret_cast<__m512bh>(_mm512_unpacklo_epi16(a, b));
      const __m512bh pair_hi = reinterpret_cast<__m512bh>(_mm512_unpackhi_epi16(a, b));
      for (int64_t g = 0; g < G; ++g) {
        int32_t weights;
        std::memcpy(&weights, pb + g * padded + t, sizeof(weights));
        const __m512bh w = reinterpret_cast<__m512bh>(_mm512_set1_epi32(weights));
        lo[g] = _mm512_dpbf16_ps(lo[g], w, pair_lo);
        hi[g] = _mm512_dpbf16_ps(hi[g], w, pair_hi);
      }
    }
    for (int64_t g = 0; g < G; ++g) {  // lanes back in dim order: [lo L0, hi L0, lo L1, hi L1], [lo L2, hi L2, ...]
      const __m512 first = _mm512_shuffle_f32x4(lo[g], hi[g], _MM_SHUFFLE(1, 0, 1, 0));
      const __m512 second = _mm512_shuffle_f32x4(lo[g], hi[g], _MM_SHUFFLE(3, 2, 3, 2));
      _mm512_storeu_ps(o + g * D + c * kChunk, _mm512_shuffle_f32x4(first, first, _MM_SHUFFLE(3, 1, 2, 0)));
      _mm512_storeu_ps(o + g * D + c * kChunk + 16, _mm512_shuffle_f32x4(second, second, _MM_SHUFFLE(3, 1, 2, 0)));
    }
  }
}

void attend_bf16(const float* qp, const c10::BFloat16* kp, const c10::BFloat16* vp, const int64_t* pos, const int64_t* slot, float* op,
                 int64_t B, int64_t H, int64_t Hkv, int64_t D, int64_t s_slot, int64_t s_head, int64_t s_pos,
                 int64_t window, float alpha) {
  const int64_t G = H / Hkv;
  at::parallel_for(0, B * Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    std::vector<c10::BFloat16> qb(G * D), pb;
    for (int64_t task = begin; task < end; ++task) {
      const auto [b, h, n, offset] = task_span(pos, slot, task, Hkv, s_slot, s_head, s_pos, window);
      scores.resize(kGroupBlock * n);
      pb.resize(kGroupBlock * (n + 1));
      const float* qs = qp + (b * H + h * G) * D;
      round_to_bf16(qs, G * D, qb.data());
      const c10::BFloat16* keys = kp + offset;
      const c10::BFloat16* values = vp + offset;
      const NextTask next = task + 1 < end
          ? next_task(kp, vp, task_span(pos, slot, task + 1, Hkv, s_slot, s_head, s_pos, window), s_pos, D)
          : NextTask{};
      for (int64_t g0 = 0; g0 < G; g0 += kGroupBlock)
        attend_bf16_task(qb.data() + g0 * D, std::min(kGroupBlock, G - g0), keys, values, s_pos, n, D, alpha,
                         scores.data(), pb.data(), op + (b * H + h * G + g0) * D, g0 == 0 ? next : NextTask{});
    }
  });
}
#endif

// q: (B, H, D) fp32; k, v: (S, Hkv, L, D) fp32 or bf16 (both the same) with unit stride in D (S >= B: the
// first B slots run); positions: (B,) int64, the query's own position (its key is already written);
// window > 0: keys older than `window` positions are hidden (HF: q - window < k <= q). bf16_dots: see the top;
// ignored where it does not apply (fp32 K/V, no AVX-512 BF16, D not a multiple of 32). slots: (B,) int64, row b
// reads slot slots[b] (a prefill's tokens: several rows of one slot); default row b reads slot b.
torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor positions,
                               int64_t window, double scale, bool bf16_dots, c10::optional<torch::Tensor> slots) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 4 && v.dim() == 4, "decode_attention: q (B, H, D), k/v (S, Hkv, L, D)");
  TORCH_CHECK(q.scalar_type() == at::kFloat, "decode_attention: fp32 q");
  TORCH_CHECK((k.scalar_type() == at::kFloat || k.scalar_type() == at::kBFloat16) && v.scalar_type() == k.scalar_type(),
              "decode_attention: k and v both fp32 or both bf16");
  TORCH_CHECK(positions.scalar_type() == at::kLong && positions.dim() == 1, "decode_attention: int64 positions (B,)");
  TORCH_CHECK(k.stride(3) == 1 && v.stride(3) == 1 && k.strides() == v.strides(), "decode_attention: k/v layout");
  q = q.contiguous();
  positions = positions.contiguous();
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2), Hkv = k.size(1), L = k.size(2);
  TORCH_CHECK(H % Hkv == 0 && k.size(3) == D && positions.size(0) == B,
              "decode_attention: shapes do not match");
  const int64_t* pos = positions.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) TORCH_CHECK(pos[b] >= 0 && pos[b] < L, "decode_attention: position outside the cache");
  const int64_t* slot = r1lab::row_slots(slots, B, k.size(0), "decode_attention");
  auto out = torch::empty_like(q);
  const float alpha = static_cast<float>(scale);
#ifdef R1LAB_BF16_DOTS
  if (bf16_dots && k.scalar_type() == at::kBFloat16 && D % kChunk == 0) {
    attend_bf16(q.data_ptr<float>(), k.data_ptr<c10::BFloat16>(), v.data_ptr<c10::BFloat16>(), pos, slot,
                out.data_ptr<float>(), B, H, Hkv, D, k.stride(0), k.stride(1), k.stride(2), window, alpha);
    return out;
  }
#endif
  if (k.scalar_type() == at::kFloat)
    attend(q.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>(), pos, slot, out.data_ptr<float>(), B, H, Hkv, D,
           k.stride(0), k.stride(1), k.stride(2), window, alpha);
  else
    attend(q.data_ptr<float>(), k.data_ptr<c10::BFloat16>(), v.data_ptr<c10::BFloat16>(), pos, slot, out.data_ptr<float>(),
           B, H, Hkv, D, k.stride(0), k.stride(1), k.stride(2), window, alpha);
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_attention", &decode_attention, "decode-step attention over a slot KV cache (fp32 or bf16 K/V)",
        pybind11::arg("q"), pybind11::arg("k"), pybind11::arg("v"), pybind11::arg("positions"), pybind11::arg("window"),
        pybind11::arg("scale"), pybind11::arg("bf16_dots") = false, pybind11::arg("slots") = pybind11::none());
}
