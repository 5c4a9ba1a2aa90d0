// bf16 matmul for decode-sized batches (y = x W^T + b, x (M, K) bf16, W prepacked bf16, fp32 accumulation) with
// AVX-512 BF16 dot products.
//
// Why: at decode batch sizes (M = 8..64 rows) oneDNN's bf16 inner product runs SmolLM2's matmuls at about half
// of this CPU's bf16 GEMM peak (measured at M = 32: ~200 of ~400 GFLOP/s, the same with every prepack batch
// hint), and the matmuls are most of a decode step. Here the weight is packed once as (N/16, K/2, 16, 2): one
// 64-byte load holds two k steps of 16 output columns, the operand layout of VDPBF16PS. A tile of up to 8 rows x
// 48 columns keeps 24 fp32 accumulators in registers; each k pair costs 3 weight loads and 8 broadcasts of x for
// 24 dot products. Threads split the output columns into 48-wide panels; within a panel the rows are walked in
// blocks of 8, so the panel's weights come from L2 after the first block. Rows are taken 256 at a time so a long
// prefill's x block stays in L2 as well. The first block of rows waits on memory for the panel's weights while the
// others compute from L2, so those others also prefetch the thread's next panel into L2, a slice each, a few
// cache lines per k step: streaming and compute overlap (measured in benchmarks/bf16_gemm.py's cold step).
//
// Results are rounded to bf16 once, from the fp32 sum with the bias added, as oneDNN does; the summation order
// differs from oneDNN's, so the two agree to bf16 rounding, not bit for bit.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) && defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
#define R1LAB_BF16 1
#endif

namespace {

constexpr int64_t kLanes = 16;    // output columns per accumulator
constexpr int kMaxRows = 8;       // rows per register tile
constexpr int kMaxBlocks = 3;     // 16-column blocks per register tile (a 48-column panel)
constexpr int64_t kRowChunk = 256;
constexpr int64_t kLineElems = 32;  // bf16 values per 64-byte cache line

bool available() {
#ifdef R1LAB_BF16
  return true;
#else
  return false;
#endif
}

int64_t ceil_div(int64_t n, int64_t m) { return (n + m - 1) / m; }

// weight (N, K) bf16 -> (ceil(N/16), ceil(K/2), 16, 2) bf16, zero padded: block b, step s holds columns
// 16b..16b+15 of y, k = 2s and 2s + 1.
torch::Tensor pack(torch::Tensor weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kBFloat16, "bf16_gemm.pack: an (N, K) bf16 weight");
  weight = weight.contiguous();
  const int64_t N = weight.size(0), K = weight.size(1), nb = ceil_div(N, kLanes), ks = ceil_div(K, 2);
  auto packed = torch::zeros({nb, ks, kLanes, 2}, weight.options());
  const uint16_t* w = reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>());
  uint16_t* p = reinterpret_cast<uint16_t*>(packed.data_ptr<at::BFloat16>());
  at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n)
      for (int64_t k = 0; k < K; ++k) p[(((n / kLanes) * ks + k / 2) * kLanes + n % kLanes) * 2 + k % 2] = w[n * K + k];
  });
  return packed;
}

#ifdef R1LAB_BF16
// ROWS rows of x (row stride ldx, K even) times BLOCKS 16-column blocks starting at block b0 -> y (row stride ldy).
// While it runs, `per_step` cache lines a k step from `prefetch` (up to `prefetch_end`) are fetched into L2.
template <int ROWS, int BLOCKS>
inline void tile(const uint16_t* x, int64_t ldx, const uint16_t* packed, int64_t ks, int64_t b0, const float* bias,
                 int64_t N, uint16_t* y, int64_t ldy, const uint16_t* prefetch, const uint16_t* prefetch_end,
                 int64_t per_step) {
  __m512 acc[ROWS][BLOCKS];
  for (int i = 0; i < ROWS; ++i)
    for (int j = 0; j < BLOCKS; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t block_elems = ks * kLanes * 2;
  const uint16_t* w = packed + b0 * block_elems;
  for (int64_t s = 0; s < ks; ++s) {
    for (int64_t p = 0; p < per_step && prefetch < prefetch_end; ++p, prefetch += kLineElems)
      _mm_prefetch(reinterpret_cast<const char*>(prefetch), _MM_HINT_T1);
    __m512bh b[BLOCKS];
    for (int j = 0; j < BLOCKS; ++j)
      b[j] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(w + j * block_elems + s * kLanes * 2));
    for (int i = 0; i < ROWS; ++i) {
      int32_t pair;
      std::memcpy(&pair, x + i * ldx + 2 * s, sizeof(pair));
      const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
      for (int j = 0; j < BLOCKS; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], a, b[j]);
    }
  }
  for (int j = 0; j < BLOCKS; ++j) {
    const int64_t n0 = (b0 + j) * kLanes, valid = std::min<int64_t>(kLanes, N - n0);
    const __mmask16 mask = valid >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
    const __m512 add = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
    for (int i = 0; i < ROWS; ++i) {
      const __m256bh out = _mm512_cvtneps_pbh(_mm512_add_ps(acc[i][j], add));
      _mm256_mask_storeu_epi16(y + i * ldy + n0, mask, reinterpret_cast<__m256i>(out));
    }
  }
}

using TileFn = void (*)(const uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, const float*, int64_t, uint16_t*,
                        int64_t, const uint16_t*, const uint16_t*, int64_t);

template <int ROWS>
TileFn tile_for(int blocks) {
  switch (blocks) {
    case 1: return &tile<ROWS, 1>;
    case 2: return &tile<ROWS, 2>;
    default: return &tile<ROWS, 3>;
  }
}

TileFn tile_for(int rows, int blocks) {
  switch (rows) {
    case 1: return tile_for<1>(blocks);
    case 2: return tile_for<2>(blocks);
    case 3: return tile_for<3>(blocks);
    case 4: return tile_for<4>(blocks);
    case 5: return tile_for<5>(blocks);
    case 6: return tile_for<6>(blocks);
    case 7: return tile_for<7>(blocks);
    default: return tile_for<8>(blocks);
  }
}
#endif

// x: (M, K) bf16 (any leading shape, last dim K contiguous); packed: pack(W) for W (N, K); bias: (N,) fp32 or None.
// Returns (..., N) bf16. prefetch=false: no software prefetch of the next panel (for benchmarks/bf16_gemm.py).
torch::Tensor linear(torch::Tensor x, torch::Tensor packed, c10::optional<torch::Tensor> bias, int64_t N,
                     bool prefetch) {
#ifdef R1LAB_BF16
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && x.dim() >= 1, "bf16_gemm.linear: x (..., K) bf16");
  TORCH_CHECK(packed.dim() == 4 && packed.size(2) == kLanes && packed.size(3) == 2 && packed.is_contiguous() &&
                  packed.scalar_type() == at::kBFloat16,
              "bf16_gemm.linear: a weight from pack()");
  const int64_t K = x.size(-1), nb = packed.size(0), ks = packed.size(1);
  TORCH_CHECK(K % 2 == 0 && K / 2 == ks && ceil_div(N, kLanes) == nb,
              "bf16_gemm.linear: x's last dimension or N does not match the packed weight (K must be even)");
  const float* b = nullptr;
  if (bias.has_value()) {
    TORCH_CHECK(bias->numel() == N && bias->scalar_type() == at::kFloat && bias->is_contiguous(),
                "bf16_gemm.linear: bias (N,) fp32");
    b = bias->data_ptr<float>();
  }
  auto sizes = x.sizes().vec();
  auto x2 = x.reshape({-1, K}).contiguous();
  const int64_t M = x2.size(0);
  sizes.back() = N;
  auto y = torch::empty({M, N}, x.options());
  const uint16_t* xp = reinterpret_cast<const uint16_t*>(x2.data_ptr<at::BFloat16>());
  const uint16_t* wp = reinterpret_cast<const uint16_t*>(packed.data_ptr<at::BFloat16>());
  uint16_t* yp = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
  const int64_t panels = ceil_div(nb, kMaxBlocks);
  for (int64_t r0 = 0; r0 < M; r0 += kRowChunk) {
    const int64_t r1 = std::min(M, r0 + kRowChunk);
    const int64_t row_blocks = ceil_div(r1 - r0, kMaxRows), block_elems = ks * kLanes * 2;
    at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t panel = begin; panel < end; ++panel) {
        const int64_t b0 = panel * kMaxBlocks;
        const int blocks = static_cast<int>(std::min<int64_t>(kMaxBlocks, nb - b0));
        // the next panel of this thread (contiguous after this one), split over row blocks 1..row_blocks-1
        const uint16_t* next = wp + (b0 + blocks) * block_elems;
        const uint16_t* next_end = panel + 1 < end ? wp + std::min(nb, b0 + blocks + kMaxBlocks) * block_elems : next;
        // (one block of rows: it prefetches while it streams, keeping more memory requests in flight)
        const int64_t lines = prefetch ? (next_end - next) / kLineElems : 0, helpers = std::max<int64_t>(1, row_blocks - 1);
        const int64_t share = ceil_div(lines, helpers), per_step = ceil_div(share, ks), first = row_blocks > 1;
        for (int64_t m = r0, i = 0; m < r1; m += kMaxRows, ++i) {
          const int rows = static_cast<int>(std::min<int64_t>(kMaxRows, r1 - m));
          const uint16_t* from = i >= first ? std::min(next + (i - first) * share * kLineElems, next_end) : next_end;
          const uint16_t* to = i >= first ? std::min(from + share * kLineElems, next_end) : next_end;
          tile_for(rows, blocks)(xp + m * K, K, wp, ks, b0, b, N, yp + m * N, N, from, to, per_step);
        }
      }
    });
  }
  return y.view(sizes);
#else
  TORCH_CHECK(false, "bf16_gemm: built without AVX-512 BF16");
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("available", &available, "whether this build has the AVX-512 BF16 kernel");
  m.def("pack", &pack, "an (N, K) bf16 weight in the kernel's blocked layout");
  m.def("linear", &linear, "y = x W^T + b in bf16 with fp32 accumulation, W from pack()", pybind11::arg("x"),
        pybind11::arg("packed"), pybind11::arg("bias"), pybind11::arg("n"), pybind11::arg("prefetch") = true);
}
