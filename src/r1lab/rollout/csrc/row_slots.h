// The cache slot each row of a decode-kernel call reads or writes: slots[b] where given (a prefill's tokens, several
// rows per slot), else b (a decode step: no index tensor made per call).
#pragma once

#include <torch/extension.h>

namespace r1lab {

// The checked slot array, or nullptr for "row b is slot b".
inline const int64_t* row_slots(const c10::optional<torch::Tensor>& slots, int64_t rows, int64_t num_slots,
                                const char* what) {
  if (!slots.has_value()) {
    TORCH_CHECK(num_slots >= rows, what, ": more rows than cache slots");
    return nullptr;
  }
  TORCH_CHECK(slots->scalar_type() == at::kLong && slots->dim() == 1 && slots->size(0) == rows && slots->is_contiguous(),
              what, ": int64 slots (B,), contiguous");
  const int64_t* p = slots->data_ptr<int64_t>();
  for (int64_t b = 0; b < rows; ++b) TORCH_CHECK(p[b] >= 0 && p[b] < num_slots, what, ": slot outside the cache");
  return p;
}

inline int64_t slot_of(const int64_t* slots, int64_t row) { return slots == nullptr ? row : slots[row]; }

}  // namespace r1lab
