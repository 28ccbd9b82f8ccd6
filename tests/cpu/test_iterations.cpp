// Newton iteration counts. Asserted: per-step Newton is exact after at most T
// iterations, chunked Newton after at most ceil(T / chunk), and the report says
// so. Recorded (printed as "[iterations] ..." lines): the counts each form needs
// at the default tolerance on random inputs and on near-chaotic DiagTanh cells
// (a ~ 1 and > 1, so |A_t| near or above 1).
#include <cstdio>
#include <string>
#include <vector>

#include "catch.hpp"
#include "reference.hpp"

using namespace flashrnn_test;
namespace cells = flashrnn::cells;

namespace {

/// Tolerances of zero: Newton may only stop when a step changes nothing at all
/// or when it is exact by construction (k >= T, resp. k >= chunks - 1).
SolverOptions exact_options(Mode mode, index_t chunk, int max_iters) {
  SolverOptions o = options(mode, chunk);
  o.atol = 0, o.rtol = 0;
  o.max_iters = max_iters;
  o.on_nonconvergence = flashrnn::OnNonConvergence::throw_error;  // no silent fallback
  return o;
}

template <class Cell, class S>
void per_step_exact(const Problem& pr0) {
  Problem pr = pr0;
  pr.round_to<S>();
  const auto ref = reference_states<Cell, double>(pr, true);
  const auto seq = reference_states<Cell, S>(pr, true);
  ForwardCall call;
  call.opts = exact_options(Mode::newton, 0, static_cast<int>(pr.T));
  const ForwardOut out = run_forward<Cell, S>(pr, call);
  const Verdict v = judge<S>(out.states, ref, seq);
  INFO(Cell::name << (sizeof(S) == 8 ? " fp64" : " fp32") << " T=" << pr.T << " lanes="
                  << pr.B * pr.H << " iterations=" << out.rep.iterations << " " << v.describe());
  CHECK(out.rep.converged);
  CHECK(out.rep.iterations >= 1);
  CHECK(out.rep.iterations <= pr.T);
  CHECK(out.rep.lanes_fell_back == 0);
  CHECK_FALSE(out.rep.nonfinite_detected);
  CHECK(v.ok);
}

template <class Cell, class S>
void chunked_exact(const Problem& pr0, index_t chunk) {
  Problem pr = pr0;
  pr.round_to<S>();
  const auto ref = reference_states<Cell, double>(pr, true);
  const auto seq = reference_states<Cell, S>(pr, true);
  const index_t chunks = (pr.T + chunk - 1) / chunk;
  ForwardCall call;
  call.opts = exact_options(Mode::newton_chunked, chunk, static_cast<int>(chunks));
  const ForwardOut out = run_forward<Cell, S>(pr, call);
  const Verdict v = judge<S>(out.states, ref, seq);
  INFO(Cell::name << (sizeof(S) == 8 ? " fp64" : " fp32") << " T=" << pr.T << " chunk=" << chunk
                  << " lanes=" << pr.B * pr.H << " iterations=" << out.rep.iterations << " "
                  << v.describe());
  CHECK(out.rep.converged);
  CHECK(out.rep.iterations <= chunks - 1);  // the first chunk starts from the exact s0
  CHECK(out.rep.lanes_fell_back == 0);
  CHECK(v.ok);
  if (chunks == 1) CHECK(out.rep.iterations == 0);
}

template <class Cell>
void exactness_suite(Inputs kind, double weight, std::uint64_t seed) {
  for (index_t T : {1, 2, 3, 17, 60})
    for (index_t lanes : {1, 6}) {
      const Problem pr = make_problem<Cell>(T, lanes == 1 ? 1 : 2, lanes == 1 ? 1 : 3, seed++, kind, weight);
      per_step_exact<Cell, double>(pr);
      if (T <= 17) per_step_exact<Cell, float>(pr);  // no overflow of a^T in fp32 either
      for (index_t chunk : {1, 2, 5, 16}) {
        chunked_exact<Cell, double>(pr, chunk);
        chunked_exact<Cell, float>(pr, chunk);
      }
    }
  // Long lanes: the chunked bound with several scan blocks of boundaries. Not
  // for expanding cells: there the linearised boundary solve overflows (a^T)
  // before exactness is reached; that case is the non-convergence test's.
  if (kind == Inputs::chaotic && weight > 1) return;
  const Problem pr = make_problem<Cell>(3000, 1, 1, seed++, kind, weight);
  for (index_t chunk : {2, 16, 100}) chunked_exact<Cell, double>(pr, chunk);
}

/// One recorded line: iterations at the default tolerance.
template <class Cell, class S>
void record(const char* label, const Problem& pr, Mode mode, index_t chunk, bool require_converged,
            const std::vector<double>& ref, const std::vector<double>& seq) {
  ForwardCall call;
  call.opts = options(mode, chunk);
  call.want_states = false;
  const ForwardOut out = run_forward<Cell, S>(pr, call);
  std::printf("[iterations] %-9s %-14s %s T=%-6lld lanes=%-3lld %-26s iterations=%-3d converged=%d fell_back=%lld nonfinite=%d\n",
              Cell::name, label, sizeof(S) == 8 ? "fp64" : "fp32", static_cast<long long>(pr.T),
              static_cast<long long>(pr.B * pr.H), mode_name(mode, chunk).c_str(),
              out.rep.iterations, out.rep.converged ? 1 : 0,
              static_cast<long long>(out.rep.lanes_fell_back), out.rep.nonfinite_detected ? 1 : 0);
  INFO(Cell::name << " " << label << " T=" << pr.T << " " << mode_name(mode, chunk)
                  << " iterations=" << out.rep.iterations);
  CHECK(out.rep.iterations <= call.opts.max_iters);
  // Under the default policy a lane that did not converge was recomputed.
  CHECK(out.rep.converged == (out.rep.lanes_fell_back == 0));
  if (require_converged) CHECK(out.rep.converged);
  // Whatever happened inside, the result is the sequential one.
  const Verdict v = judge<S>(out.final_state, last_step(ref, pr), last_step(seq, pr));
  INFO(v.describe());
  CHECK(v.ok);
}

template <class Cell, class S>
void record_forms(const char* label, const Problem& pr0, bool require_converged) {
  Problem pr = pr0;
  pr.round_to<S>();
  const auto ref = reference_states<Cell, double>(pr, true);
  const auto seq = reference_states<Cell, S>(pr, true);
  record<Cell, S>(label, pr, Mode::newton, 0, require_converged, ref, seq);
  record<Cell, S>(label, pr, Mode::newton_chunked, 0, require_converged, ref, seq);
  record<Cell, S>(label, pr, Mode::newton_chunked, 64, require_converged, ref, seq);
}

}  // namespace

TEST_CASE("iterations: Newton is exact after T steps, chunked after ceil(T/chunk)",
          "[iterations]") {
  SECTION("ParaGRU random") { exactness_suite<cells::ParaGRU>(Inputs::random, 1, 100); }
  SECTION("ParaLSTM random") { exactness_suite<cells::ParaLSTM>(Inputs::random, 1, 200); }
  SECTION("ParaLSTM saturating") { exactness_suite<cells::ParaLSTM>(Inputs::saturating, 1, 250); }
  SECTION("DiagTanh random") { exactness_suite<cells::DiagTanh>(Inputs::random, 1, 300); }
  SECTION("DiagTanh a = 1") { exactness_suite<cells::DiagTanh>(Inputs::chaotic, 1.0, 400); }
  SECTION("DiagTanh a = 1.5") { exactness_suite<cells::DiagTanh>(Inputs::chaotic, 1.5, 500); }
  SECTION("DiagTanh a = 2.5") { exactness_suite<cells::DiagTanh>(Inputs::chaotic, 2.5, 600); }
}

TEST_CASE("iterations: recorded counts at the default tolerance", "[iterations][record]") {
  std::printf("[iterations] threads=%d (0 = all)\n", context().num_threads);
  for (index_t T : {17, 1000, 100000}) {
    const index_t B = T == 100000 ? 1 : 4, H = T == 100000 ? 1 : 8;
    record_forms<cells::ParaGRU, double>("random", make_problem<cells::ParaGRU>(T, B, H, 1), true);
    record_forms<cells::ParaGRU, float>("random", make_problem<cells::ParaGRU>(T, B, H, 1), true);
    record_forms<cells::ParaLSTM, double>("random", make_problem<cells::ParaLSTM>(T, B, H, 2), true);
    record_forms<cells::ParaLSTM, float>("random", make_problem<cells::ParaLSTM>(T, B, H, 2), true);
    record_forms<cells::DiagTanh, double>("random", make_problem<cells::DiagTanh>(T, B, H, 3), true);
    record_forms<cells::DiagTanh, float>("random", make_problem<cells::DiagTanh>(T, B, H, 3), true);
  }
  for (index_t T : {17, 1000}) {
    record_forms<cells::ParaGRU, double>("saturating", make_problem<cells::ParaGRU>(T, 4, 8, 4, Inputs::saturating), false);
    record_forms<cells::ParaLSTM, double>("saturating", make_problem<cells::ParaLSTM>(T, 4, 8, 5, Inputs::saturating), false);
    for (double a : {0.9, 1.0, 1.2, 1.5, 3.0}) {
      const std::string label = "chaotic a=" + std::to_string(a).substr(0, 3);
      const Problem pr = make_problem<cells::DiagTanh>(T, 1, 4, 6, Inputs::chaotic, a);
      record_forms<cells::DiagTanh, double>(label.c_str(), pr, false);
      record_forms<cells::DiagTanh, float>(label.c_str(), pr, false);
    }
  }
}
