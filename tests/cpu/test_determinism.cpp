// Determinism: the same call twice gives bitwise identical results, and so do
// 1 thread, 2, 3 threads and the default (the blocked executor's fixed
// blocking is designed for this; lanes < threads switches to the time-parallel
// path, so one lane at 1 vs 2+ threads also compares the two paths).
// Mode and chunk length are explicit: Mode::automatic and chunk_length = 0 are
// tuning choices that may depend on the thread count.
#include <string>
#include <vector>

#include "catch.hpp"
#include "flashrnn/cells/head_tanh.hpp"
#include "reference.hpp"

using namespace flashrnn_test;
namespace cells = flashrnn::cells;

namespace {

const int kThreads[] = {1, 2, 3, 0};

struct Shape {
  index_t T, B, H;
};
// One lane (time-parallel from 2 threads on), two lanes (time-parallel at 3),
// many lanes; T above the executor's block size so scans use several blocks.
const Shape kShapes[] = {{3000, 1, 1}, {1500, 1, 2}, {700, 3, 5}, {17, 2, 2}};

template <class Cell, class S>
void forward_determinism(std::uint64_t seed, Inputs kind = Inputs::random, double weight = 1) {
  for (const Shape& sh : kShapes) {
    Problem pr = make_problem<Cell>(sh.T, sh.B, sh.H, seed++, kind, weight);
    pr.round_to<S>();
    for (SolverOptions opts : {options(Mode::sequential), options(Mode::newton),
                               options(Mode::newton_chunked, 100), options(Mode::newton_chunked, 7)}) {
      INFO(Cell::name << (sizeof(S) == 8 ? " fp64" : " fp32") << " T=" << sh.T << " B=" << sh.B
                      << " H=" << sh.H << " mode=" << mode_name(opts.mode, opts.chunk_length));
      ForwardCall call;
      call.opts = opts;
      call.ctx.num_threads = 1;
      const ForwardOut first = run_forward<Cell, S>(pr, call);
      CHECK(run_forward<Cell, S>(pr, call).states == first.states);  // same call twice
      for (int threads : kThreads) {
        INFO("threads " << threads << " vs 1");
        call.ctx.num_threads = threads;
        const ForwardOut out = run_forward<Cell, S>(pr, call);
        CHECK(out.states == first.states);
        CHECK(out.final_state == first.final_state);
        CHECK(out.rep.iterations == first.rep.iterations);
        CHECK(out.rep.final_residual == first.rep.final_residual);
        CHECK(out.rep.converged == first.rep.converged);
      }
      // The test-suite context as well (1 or 2 threads per ctest run).
      call.ctx = context();
      CHECK(run_forward<Cell, S>(pr, call).states == first.states);
    }
  }
}

template <class Cell, class S>
void backward_determinism(std::uint64_t seed, Inputs kind = Inputs::random, double weight = 1) {
  for (const Shape& sh : kShapes) {
    Problem pr = make_problem<Cell>(sh.T, sh.B, sh.H, seed++, kind, weight);
    pr.round_to<S>();
    LossWeights w = make_loss(pr, seed++, true, true);
    round_loss<S>(w);
    const auto states = reference_states<Cell, S>(pr, true);
    INFO(Cell::name << (sizeof(S) == 8 ? " fp64" : " fp32") << " T=" << sh.T << " B=" << sh.B
                    << " H=" << sh.H);
    BackwardCall call;
    call.ctx.num_threads = 1;
    const Grads first = run_backward<Cell, S>(pr, w, states, call);
    const Grads again = run_backward<Cell, S>(pr, w, states, call);
    CHECK(again.u == first.u);
    CHECK(again.p == first.p);
    CHECK(again.s0 == first.s0);
    for (int threads : kThreads) {
      INFO("threads " << threads << " vs 1");
      call.ctx.num_threads = threads;
      const Grads g = run_backward<Cell, S>(pr, w, states, call);
      CHECK(g.u == first.u);
      CHECK(g.p == first.p);
      CHECK(g.s0 == first.s0);
    }
  }
}

}  // namespace

TEST_CASE("determinism: forward, bitwise across calls and thread counts", "[determinism]") {
  SECTION("ParaGRU fp64") { forward_determinism<cells::ParaGRU, double>(1); }
  SECTION("ParaGRU fp32") { forward_determinism<cells::ParaGRU, float>(2); }
  SECTION("ParaLSTM fp64") { forward_determinism<cells::ParaLSTM, double>(3); }
  SECTION("ParaLSTM fp32") { forward_determinism<cells::ParaLSTM, float>(4); }
  SECTION("DiagTanh fp32") { forward_determinism<cells::DiagTanh, float>(5); }
  // |A_t| near 1: products of A over a scan block do not underflow, so every
  // rounding of the scan's carries reaches the result.
  SECTION("DiagTanh a = 1 fp64") { forward_determinism<cells::DiagTanh, double>(6, Inputs::chaotic, 1.0); }
  SECTION("DiagTanh a = 1 fp32") { forward_determinism<cells::DiagTanh, float>(7, Inputs::chaotic, 1.0); }
  SECTION("HeadTanh4 fp32") { forward_determinism<cells::HeadTanh4, float>(8); }
}

TEST_CASE("determinism: backward, bitwise across calls and thread counts", "[determinism]") {
  SECTION("ParaGRU fp64") { backward_determinism<cells::ParaGRU, double>(11); }
  SECTION("ParaGRU fp32") { backward_determinism<cells::ParaGRU, float>(12); }
  SECTION("ParaLSTM fp64") { backward_determinism<cells::ParaLSTM, double>(13); }
  SECTION("DiagTanh fp32") { backward_determinism<cells::DiagTanh, float>(14); }
  SECTION("DiagTanh a = 1 fp64") { backward_determinism<cells::DiagTanh, double>(15, Inputs::chaotic, 1.0); }
  SECTION("DiagTanh a = 1 fp32") { backward_determinism<cells::DiagTanh, float>(16, Inputs::chaotic, 1.0); }
  SECTION("HeadTanh4 fp32") { backward_determinism<cells::HeadTanh4, float>(17); }
}
