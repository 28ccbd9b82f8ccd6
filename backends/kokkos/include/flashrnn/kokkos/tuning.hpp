// The Kokkos backend's choices, kept apart from the algorithms: Mode::automatic,
// which parallel form a Newton solve takes, and team sizes.
#pragma once
#include <Kokkos_Core.hpp>
#include <cstddef>

#include "flashrnn/core/options.hpp"
#include "flashrnn/cpu/tuning.hpp"

namespace flashrnn {
namespace kokkos {

/// How the time-parallel work of a solve is laid out.
enum class Strategy {
  automatic,  ///< range_scan when lanes < concurrency, else team_scan / lane_sequential
  range_scan,  ///< RangePolicy over lanes*steps + one segmented parallel_scan per Newton iteration
  team_scan,   ///< TeamPolicy, a team per block of lanes scanning each sequence in team scratch
  /// One thread per lane: forward Newton as team_scan with one-thread teams;
  /// backward as the step-by-step reverse sweep.
  lane_sequential,
};

/// Backend-specific knobs; the defaults are what automatic tuning picks.
struct KokkosOptions {
  Strategy strategy = Strategy::automatic;
  /// Threads per team on device spaces (host spaces use 1); 0 = the table below.
  int team_size = 0;
};

namespace tuning {

template <class ExecSpace>
constexpr bool is_host_space() {
  return Kokkos::SpaceAccessibility<ExecSpace, Kokkos::HostSpace>::accessible;
}

/// Team size on device spaces: 128 threads scan one lane's sequence (4 warps
/// of 32 or 2 wavefronts of 64). Host teams are one thread: a host team
/// member is a whole core, so lanes, not time slices, feed the threads.
constexpr int device_team_size = 128;

/// Lanes one host thread steps together in Mode::sequential: 16 consecutive
/// units share each cache line of u and states (measured on the build
/// machine, H = 256: 1.4-1.5x faster than one lane at a time). Devices: 1.
template <class ExecSpace>
constexpr int sequential_lane_block() {
  return is_host_space<ExecSpace>() ? 16 : 1;
}

/// Mode::automatic. Host spaces share the native CPU backend's measured table
/// (backends/cpu/tuning.hpp). Device spaces: one thread per lane stepping
/// sequentially is the fastest form once lanes fill the device; chunked
/// Newton only when lanes are few and sequences long (not yet measured on a
/// GPU through Kokkos: see docs/portability.md).
template <class ExecSpace>
Mode choose_mode(const ExecSpace& space, index_t lanes, index_t steps, std::size_t storage_bytes) {
  const int conc = space.concurrency();
  if (is_host_space<ExecSpace>()) return cpu::tuning::choose_mode(lanes, steps, conc, storage_bytes);
  if (lanes >= conc / 8 || steps < 1024) return Mode::sequential;
  return Mode::newton_chunked;
}

/// Strategy::automatic: flat range kernels when there are fewer lanes than
/// threads (time must supply the parallelism); otherwise teams for the forward
/// Newton and one thread per lane for the backward (as the native backend).
template <class ExecSpace>
Strategy choose_strategy(const ExecSpace& space, index_t lanes, Strategy requested, bool backward) {
  if (requested != Strategy::automatic) return requested;
  if (lanes < static_cast<index_t>(space.concurrency())) return Strategy::range_scan;
  return backward ? Strategy::lane_sequential : Strategy::team_scan;
}

/// Threads per team for the team kernels.
template <class ExecSpace>
int team_size(const KokkosOptions& o, Strategy s) {
  if (s == Strategy::lane_sequential || is_host_space<ExecSpace>()) return 1;
  return o.team_size > 0 ? o.team_size : device_team_size;
}

}  // namespace tuning
}  // namespace kokkos
}  // namespace flashrnn
