// Newton (per-step and chunked, default and explicit chunk lengths) equals the
// sequential reference for every cell, precision, layout, optional argument and
// shape; tolerances tied to the precision (see reference.hpp: judge).
#include <cstdio>
#include <string>
#include <vector>

#include "catch.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "reference.hpp"

using namespace flashrnn_test;
namespace cells = flashrnn::cells;

namespace {

struct ModeCase {
  Mode mode;
  index_t chunk;
};

/// Mode configurations worth running at length T.
std::vector<ModeCase> mode_cases(index_t T) {
  std::vector<ModeCase> m = {{Mode::sequential, 0}, {Mode::automatic, 0}, {Mode::newton, 0},
                             {Mode::newton_chunked, 0}, {Mode::newton_chunked, 1},
                             {Mode::newton_chunked, 2}, {Mode::newton_chunked, 7},
                             {Mode::newton_chunked, T}, {Mode::newton_chunked, T + 5}};
  if (T >= 64) m.push_back({Mode::newton_chunked, 64});
  if (T >= 1000) m.push_back({Mode::newton_chunked, 333});
  return m;
}

/// Runs one forward and checks everything a caller may rely on.
template <class Cell, class S>
void check_one(const Problem& pr, const ForwardCall& call, const std::vector<double>& ref64,
               const std::vector<double>& seq, bool require_converged) {
  const ForwardOut out = run_forward<Cell, S>(pr, call);
  INFO(Cell::name << (std::is_same<S, double>::value ? " fp64" : " fp32") << " T=" << pr.T
                  << " B=" << pr.B << " H=" << pr.H << " layout=" << to_string(call.layout)
                  << " mode=" << mode_name(call.opts.mode, call.opts.chunk_length)
                  << " s0=" << call.use_s0 << " states=" << call.want_states
                  << " final=" << call.want_final << " threads=" << call.ctx.num_threads);
  INFO("report: mode_used=" << flashrnn::to_string(out.rep.mode_used) << " iterations="
                            << out.rep.iterations << " residual=" << out.rep.final_residual
                            << " converged=" << out.rep.converged
                            << " fell_back=" << out.rep.lanes_fell_back);
  CHECK(out.padding_touched == 0);
  CHECK(out.rep.lanes == pr.B * pr.H);
  if (call.opts.mode != Mode::automatic) CHECK(out.rep.mode_used == call.opts.mode);
  if (out.rep.mode_used == Mode::sequential) CHECK(out.rep.iterations == 0);
  if (require_converged) {
    CHECK(out.rep.converged);
    CHECK(out.rep.lanes_fell_back == 0);
    CHECK_FALSE(out.rep.nonfinite_detected);
  }
  if (call.want_states) {
    const Verdict v = judge<S>(out.states, ref64, seq);
    INFO("states: " << v.describe());
    CHECK(v.ok);
  }
  if (call.want_final) {
    const Verdict v = judge<S>(out.final_state, last_step(ref64, pr), last_step(seq, pr));
    INFO("final_state: " << v.describe());
    CHECK(v.ok);
    if (call.want_states) CHECK(out.final_state == last_step(out.states, pr));  // bitwise
  }
}

/// The sweep of shapes, layouts, modes and optional arguments for one cell and precision.
template <class Cell, class S>
void sweep(Inputs kind, std::uint64_t seed, bool require_converged) {
  const index_t Ts[] = {1, 2, 3, 17, 1000};
  struct BH {
    index_t B, H;
  };
  // lanes = 1 runs time-parallel at 2 threads; the others lane-parallel.
  const BH shapes[] = {{1, 1}, {2, 3}, {3, 8}};
  const Layout layouts[] = {Layout::batch_first, Layout::time_first, Layout::padded};
  int variant = 0;
  for (index_t T : Ts)
    for (const BH& bh : shapes) {
      Problem pr = make_problem<Cell>(T, bh.B, bh.H, seed + 1000 * T + 10 * bh.B + bh.H, kind);
      pr.round_to<S>();
      for (bool use_s0 : {true, false}) {
        const auto ref64 = reference_states<Cell, double>(pr, use_s0);
        const auto seq = reference_states<Cell, S>(pr, use_s0);
        for (const ModeCase& mc : mode_cases(T)) {
          ++variant;
          ForwardCall call;
          call.opts = options(mc.mode, mc.chunk);
          call.layout = layouts[variant % 3];
          call.use_s0 = use_s0;
          call.want_states = variant % 4 != 1;
          call.want_final = variant % 4 != 2;
          check_one<Cell, S>(pr, call, ref64, seq, require_converged);
        }
      }
    }
}

/// Very long sequences, few lanes (time-parallel at 2 threads, several scan blocks).
template <class Cell, class S>
void long_sequences(std::uint64_t seed) {
  const index_t T = 100000;
  for (index_t H : {1, 2}) {
    Problem pr = make_problem<Cell>(T, 1, H, seed + H);
    pr.round_to<S>();
    const auto ref64 = reference_states<Cell, double>(pr, true);
    const auto seq = reference_states<Cell, S>(pr, true);
    // One lane: every form (time-parallel at 2 threads); two lanes: per-step Newton.
    std::vector<ModeCase> modes = {{Mode::newton, 0}};
    if (H == 1) modes.insert(modes.end(), {{Mode::newton_chunked, 0}, {Mode::newton_chunked, 1000}});
    for (const ModeCase& mc : modes) {
      ForwardCall call;
      call.opts = options(mc.mode, mc.chunk);
      call.layout = H == 1 ? Layout::time_first : Layout::padded;
      check_one<Cell, S>(pr, call, ref64, seq, true);
    }
  }
}

}  // namespace

TEST_CASE("forward: Newton equals stepping, ParaGRU", "[forward][ParaGRU]") {
  SECTION("fp64") { sweep<cells::ParaGRU, double>(Inputs::random, 11, true); }
  SECTION("fp32") { sweep<cells::ParaGRU, float>(Inputs::random, 12, true); }
}

TEST_CASE("forward: Newton equals stepping, ParaLSTM", "[forward][ParaLSTM]") {
  SECTION("fp64") { sweep<cells::ParaLSTM, double>(Inputs::random, 21, true); }
  SECTION("fp32") { sweep<cells::ParaLSTM, float>(Inputs::random, 22, true); }
}

TEST_CASE("forward: Newton equals stepping, DiagTanh", "[forward][DiagTanh]") {
  SECTION("fp64") { sweep<cells::DiagTanh, double>(Inputs::random, 31, true); }
  SECTION("fp32") { sweep<cells::DiagTanh, float>(Inputs::random, 32, true); }
}

TEST_CASE("forward: Newton equals stepping, HeadTanh4", "[forward][HeadTanh]") {
  SECTION("fp64") { sweep<cells::HeadTanh4, double>(Inputs::random, 35, true); }
  SECTION("fp32") { sweep<cells::HeadTanh4, float>(Inputs::random, 36, true); }
}

TEST_CASE("forward: T = 100000 with few lanes", "[forward][long]") {
  SECTION("ParaGRU fp64") { long_sequences<cells::ParaGRU, double>(41); }
  SECTION("ParaGRU fp32") { long_sequences<cells::ParaGRU, float>(42); }
  SECTION("ParaLSTM fp64") { long_sequences<cells::ParaLSTM, double>(43); }
  SECTION("ParaLSTM fp32") { long_sequences<cells::ParaLSTM, float>(44); }
  SECTION("DiagTanh fp64") { long_sequences<cells::DiagTanh, double>(45); }
  SECTION("DiagTanh fp32") { long_sequences<cells::DiagTanh, float>(46); }
  SECTION("HeadTanh4 fp64") { long_sequences<cells::HeadTanh4, double>(47); }
  SECTION("HeadTanh4 fp32") { long_sequences<cells::HeadTanh4, float>(48); }
}

// Saturating gates (pre-activations ~ ±30 and ±1e4) and large recurrent
// weights (|a| up to 5). Newton may need the fallback here, but the result must
// still be the sequential one, finite, within the precision's tolerance.
TEST_CASE("forward: adversarial inputs (saturation, large weights)", "[forward][adversarial]") {
  SECTION("ParaGRU fp64") { sweep<cells::ParaGRU, double>(Inputs::saturating, 51, false); }
  SECTION("ParaGRU fp32") { sweep<cells::ParaGRU, float>(Inputs::saturating, 52, false); }
  SECTION("ParaLSTM fp64") { sweep<cells::ParaLSTM, double>(Inputs::saturating, 53, false); }
  SECTION("ParaLSTM fp32") { sweep<cells::ParaLSTM, float>(Inputs::saturating, 54, false); }
  SECTION("DiagTanh fp64") { sweep<cells::DiagTanh, double>(Inputs::saturating, 55, false); }
  SECTION("DiagTanh fp32") { sweep<cells::DiagTanh, float>(Inputs::saturating, 56, false); }
  // HeadTanh4 fp32 runs in test_head_tanh.cpp ("saturating inputs, fp32"): per-step
  // Newton converges only linearly across saturation switches there, and its
  // default fp32 stop (update <= 1e-5) leaves up to ~6.5x stepping's error.
  SECTION("HeadTanh4 fp64") { sweep<cells::HeadTanh4, double>(Inputs::saturating, 57, false); }
}
