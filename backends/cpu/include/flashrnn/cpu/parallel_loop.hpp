// The CPU runtime behind every parallel loop: oneTBB (default), OpenMP, or
// serial, chosen at configure time (FLASHRNN_CPU_RUNTIME). This is the only
// file that names a threading library.
#pragma once
#include <memory>

#include "flashrnn/core/config.hpp"

#if defined(FLASHRNN_CPU_RUNTIME_TBB)
#include <tbb/blocked_range.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#elif defined(FLASHRNN_CPU_RUNTIME_OPENMP)
#include <omp.h>
#endif

namespace flashrnn {
namespace cpu {

/// Name of the threading runtime compiled in.
inline const char* runtime_name() {
#if defined(FLASHRNN_CPU_RUNTIME_TBB)
  return "oneTBB";
#elif defined(FLASHRNN_CPU_RUNTIME_OPENMP)
  return "OpenMP";
#else
  return "serial";
#endif
}

/// Hardware threads the runtime would use by default.
inline int default_threads() {
#if defined(FLASHRNN_CPU_RUNTIME_TBB)
  return tbb::info::default_concurrency();
#elif defined(FLASHRNN_CPU_RUNTIME_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// A fixed number of worker threads and a parallel loop over blocks on them.
class ThreadPool {
 public:
  explicit ThreadPool(int threads = 0) : threads_(threads > 0 ? threads : default_threads()) {
#if defined(FLASHRNN_CPU_RUNTIME_TBB)
    arena_ = std::make_shared<tbb::task_arena>(threads_);
#endif
  }
  int threads() const { return threads_; }

  /// f(block) for block in [0, n), in parallel; returns when all are done.
  template <class F>
  void parallel_blocks(index_t n, const F& f) const {
    if (n <= 0) return;
    if (n == 1 || threads_ == 1) {
      for (index_t i = 0; i < n; ++i) f(i);
      return;
    }
#if defined(FLASHRNN_CPU_RUNTIME_TBB)
    arena_->execute([&] {
      tbb::parallel_for(tbb::blocked_range<index_t>(0, n, 1), [&](const tbb::blocked_range<index_t>& r) {
        for (index_t i = r.begin(); i != r.end(); ++i) f(i);
      });
    });
#elif defined(FLASHRNN_CPU_RUNTIME_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (index_t i = 0; i < n; ++i) f(i);
#else
    for (index_t i = 0; i < n; ++i) f(i);
#endif
  }

 private:
  int threads_;
#if defined(FLASHRNN_CPU_RUNTIME_TBB)
  std::shared_ptr<tbb::task_arena> arena_;
#endif
};

}  // namespace cpu
}  // namespace flashrnn
