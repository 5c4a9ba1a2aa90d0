// Elementwise math as plain arithmetic on bits, so that the loops calling it vectorise on every x86 target: the C
// library's expf and c10::BFloat16's conversions do not, and scalar code per element of a (32, 1536) decode
// activation costs more than the matmul that made it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace r1lab {

// 2^n * p(r), x = n ln2 + r, |r| <= ln2 / 2, p of degree 6: ~2e-7 relative. 0 below -87 (and for -inf).
inline float exp_nonpositive(float x) {
  const float clamped = std::max(x, -87.f);
  const float shifter = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (clamped * 1.44269504f + shifter) - shifter;
  const float r = (clamped - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 in two parts
  float p = 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.f ? 0.f : p * scale;
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even, as c10::BFloat16 does (NaN stays NaN).
inline uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return f != f ? static_cast<uint16_t>(0x7FC0u) : static_cast<uint16_t>(rounded);
}

// x * sigmoid(x) from exp(-|x|), which never overflows.
inline float silu(float x) {
  const float e = exp_nonpositive(-std::abs(x));
  return x * (x >= 0.f ? 1.f : e) / (1.f + e);
}

}  // namespace r1lab
