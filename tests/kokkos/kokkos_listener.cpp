// Initialises Kokkos once for the whole run (and finalises it), as a Catch2
// listener so that the suite keeps the project's shared test main.
#define CATCH_CONFIG_EXTERNAL_INTERFACES  // Catch2 v2: listeners outside the main TU
#include <Kokkos_Core.hpp>

#include "catch.hpp"

namespace {
#if defined(CATCH_VERSION_MAJOR) && CATCH_VERSION_MAJOR >= 3
using ListenerBase = Catch::EventListenerBase;
#else
using ListenerBase = Catch::TestEventListenerBase;
#endif

struct KokkosLifetime : ListenerBase {
  using ListenerBase::ListenerBase;
  void testRunStarting(Catch::TestRunInfo const&) override {
    if (!Kokkos::is_initialized()) Kokkos::initialize();
  }
  void testRunEnded(Catch::TestRunStats const&) override {
    if (Kokkos::is_initialized()) Kokkos::finalize();
  }
};
}  // namespace

CATCH_REGISTER_LISTENER(KokkosLifetime)
