// The cache slot each row of a decode-kernel call reads or writes: slots[b] where given (a prefill's tokens, several
// rows per slot), else b.
#pragma once

#include <torch/extension.h>

namespace r1lab {

inline torch::Tensor row_slots(const c10::optional<torch::Tensor>& slots, int64_t rows, int64_t num_slots,
                               const char* what) {
  if (!slots.has_value()) {
    TORCH_CHECK(num_slots >= rows, what, ": more rows than cache slots");
    return torch::arange(rows, torch::dtype(torch::kLong));
  }
  TORCH_CHECK(slots->scalar_type() == at::kLong && slots->dim() == 1 && slots->size(0) == rows, what,
              ": int64 slots (B,)");
  torch::Tensor out = slots->contiguous();
  const int64_t* p = out.data_ptr<int64_t>();
  for (int64_t b = 0; b < rows; ++b) TORCH_CHECK(p[b] >= 0 && p[b] < num_slots, what, ": slot outside the cache");
  return out;
}

}  // namespace r1lab
