// One-row int8 matmul (y = x W^T, W int8 per output row, x quantized to int8 per call) with AVX-512 VNNI.
//
// Why: at batch 1 (serving) each decode step is 4 int8 matmuls a layer, and fbgemm's dynamic-quantized linear
// costs ~14 us a call before any arithmetic (measured on a 16 x 16 weight), a sixth of a SmolLM2 token. Here a
// call is: quantize x (symmetric, 8 bits), then stream the weight once, 64 bytes per VNNI dot product, 4 blocks
// of 16 output rows in flight so the products do not wait on each other. At batch > 1 fbgemm is kept
// (linear.py): its GEMM reuses each weight byte across rows, this does not.
//
// VNNI multiplies unsigned by signed bytes, so x is stored as x_q + 128 and the 128 * sum(W row) this adds
// is subtracted at the end (the row sums are kept with the packed weight).

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#define R1LAB_VNNI 1
#endif

namespace {

constexpr int64_t kRows = 16;   // output rows per VNNI accumulator (16 int32 lanes)
constexpr int64_t kBlocks = 8;  // accumulators in flight

bool available() {
#ifdef R1LAB_VNNI
  return true;
#else
  return false;
#endif
}

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// weight: (N, K) int8 -> (ceil(N/16), ceil(K/4), 16, 4) int8, zero padded: block b, step s holds rows
// 16b..16b+15, columns 4s..4s+3 (the 64 bytes one VNNI product reads).
torch::Tensor pack(torch::Tensor weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kChar, "int8_gemv.pack: an (N, K) int8 weight");
  weight = weight.contiguous();
  const int64_t N = weight.size(0), K = weight.size(1), nb = round_up(N, kRows) / kRows, ks = round_up(K, 4) / 4;
  auto packed = torch::zeros({nb, ks, kRows, 4}, weight.options());
  const int8_t* w = weight.data_ptr<int8_t>();
  int8_t* p = packed.data_ptr<int8_t>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) p[(((n / kRows) * ks + k / 4) * kRows + n % kRows) * 4 + k % 4] = w[n * K + k];
  return packed;
}

#ifdef R1LAB_VNNI
// Blocks [b0, b0 + count) of the packed weight against the quantized row xu (ks groups of 4 bytes).
inline void blocks(const int8_t* packed, int64_t ks, const uint8_t* xu, int64_t b0, int64_t count, const float* scale,
                   const int32_t* row_sum, const float* bias, float x_scale, int64_t N, float* y) {
  __m512i acc[kBlocks];
  for (int64_t j = 0; j < count; ++j) acc[j] = _mm512_setzero_si512();
  const int8_t* base = packed + b0 * ks * kRows * 4;
  const int64_t block_bytes = ks * kRows * 4;
  for (int64_t s = 0; s < ks; ++s) {
    const __m512i x4 = _mm512_set1_epi32(*reinterpret_cast<const int32_t*>(xu + 4 * s));
    for (int64_t j = 0; j < count; ++j)
      acc[j] = _mm512_dpbusd_epi32(acc[j], x4, _mm512_loadu_si512(base + j * block_bytes + s * kRows * 4));
  }
  for (int64_t j = 0; j < count; ++j) {
    const int64_t n0 = (b0 + j) * kRows, valid = std::min<int64_t>(kRows, N - n0);
    const __mmask16 mask = valid >= kRows ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    const __m512i sums = _mm512_maskz_loadu_epi32(mask, row_sum + n0);
    const __m512i dot = _mm512_sub_epi32(acc[j], _mm512_slli_epi32(sums, 7));  // - 128 * sum(W row)
    __m512 out = _mm512_mul_ps(_mm512_cvtepi32_ps(dot),
                               _mm512_mul_ps(_mm512_set1_ps(x_scale), _mm512_maskz_loadu_ps(mask, scale + n0)));
    if (bias != nullptr) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mask, bias + n0));
    _mm512_mask_storeu_ps(y + n0, mask, out);
  }
}
#endif

// x: (1, K) fp32; packed: pack(W); scale: (N,) fp32 per output row; row_sum: (N,) int32 sums of W's rows;
// bias: (N,) fp32 or None. Returns (1, N) fp32.
torch::Tensor gemv(torch::Tensor x, torch::Tensor packed, torch::Tensor scale, torch::Tensor row_sum,
                   c10::optional<torch::Tensor> bias) {
#ifdef R1LAB_VNNI
  TORCH_CHECK(x.dim() == 2 && x.size(0) == 1 && x.scalar_type() == at::kFloat, "int8_gemv: x (1, K) fp32");
  TORCH_CHECK(packed.dim() == 4 && packed.size(2) == kRows && packed.size(3) == 4 && packed.is_contiguous(),
              "int8_gemv: a weight from pack()");
  const int64_t K = x.size(1), N = scale.size(0), nb = packed.size(0), ks = packed.size(1);
  TORCH_CHECK(round_up(K, 4) / 4 == ks && round_up(N, kRows) / kRows == nb && row_sum.size(0) == N &&
                  scale.is_contiguous() && row_sum.is_contiguous() && row_sum.scalar_type() == at::kInt &&
                  scale.scalar_type() == at::kFloat,
              "int8_gemv: x, scale and row_sum do not match the packed weight");
  x = x.contiguous();
  const float* xp = x.data_ptr<float>();
  float amax = 0.f;
  for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(xp[k]));
  const float x_scale = amax > 0.f ? amax / 127.f : 1.f, inv = 1.f / x_scale;
  std::vector<uint8_t> xu(4 * ks, 128);  // the padding is x = 0
  for (int64_t k = 0; k < K; ++k) xu[k] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(xp[k] * inv)) + 128);
  auto y = torch::empty({1, N}, x.options());
  const float* b = nullptr;
  if (bias.has_value()) {
    TORCH_CHECK(bias->numel() == N && bias->scalar_type() == at::kFloat && bias->is_contiguous(), "int8_gemv: bias (N,)");
    b = bias->data_ptr<float>();
  }
  const int64_t groups = (nb + kBlocks - 1) / kBlocks;
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g)
      blocks(packed.data_ptr<int8_t>(), ks, xu.data(), g * kBlocks, std::min(kBlocks, nb - g * kBlocks),
             scale.data_ptr<float>(), row_sum.data_ptr<int32_t>(), b, x_scale, N, y.data_ptr<float>());
  });
  return y;
#else
  TORCH_CHECK(false, "int8_gemv: built without AVX-512 VNNI");
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("available", &available, "whether this build has the AVX-512 VNNI kernel");
  m.def("pack", &pack, "an (N, K) int8 weight in the kernel's blocked layout");
  m.def("gemv", &gemv, "y = x W^T for one row x, W int8 per output row, x quantized per call");
}
