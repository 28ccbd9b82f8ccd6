// The CPU backend: oneTBB/OpenMP loops over lanes, or over time inside a lane
// when there are fewer lanes than threads. All mathematics lives in core/.
#pragma once
#include <algorithm>

#include "flashrnn/core/blocked_exec.hpp"
#include "flashrnn/core/options.hpp"
#include "flashrnn/cpu/parallel_loop.hpp"
#include "flashrnn/cpu/tuning.hpp"

namespace flashrnn {
namespace cpu {

class Backend {
 public:
  /// threads = 0: the runtime's default (all hardware threads).
  explicit Backend(int threads = 0) : pool_(threads) {}

  int workers() const { return pool_.threads(); }

  /// f(begin, end) over [0, n) in blocks of at least `grain`, in parallel.
  template <class F>
  void for_blocks(index_t n, index_t grain, const F& f) const {
    const index_t target = 8 * static_cast<index_t>(workers());  // a few blocks per thread balances load
    const index_t bs = std::max(grain, (n + target - 1) / target);
    const index_t nb = (n + bs - 1) / bs;
    pool_.parallel_blocks(nb, [&](index_t blk) { f(blk * bs, std::min(n, (blk + 1) * bs)); });
  }

  struct Loop {
    const ThreadPool* pool;
    template <class F>
    void operator()(index_t n, const F& f) const { pool->parallel_blocks(n, f); }
  };
  /// Executor for time-parallel work inside one lane.
  BlockedExec<Loop> time_exec() const { return BlockedExec<Loop>{Loop{&pool_}}; }

  Mode choose_mode(index_t lanes, index_t steps, size_t storage_bytes) const {
    return tuning::choose_mode(lanes, steps, workers(), storage_bytes);
  }

 private:
  ThreadPool pool_;
};

}  // namespace cpu
}  // namespace flashrnn
