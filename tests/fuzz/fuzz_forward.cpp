// libFuzzer target over flashrnn::forward and flashrnn::backward (issue 6).
// The input decodes a cell, a precision, a small shape, thread count, solver
// options, a memory layout
// for every view (axis order, padding, broadcast inputs), the data (with
// occasional inf/NaN/denormals/huge values) and at most one deliberate
// argument error. Checks:
//   - no crash, no sanitizer report, no write outside the output views'
//     elements, inputs untouched;
//   - InvalidArgument exactly when an argument error was planted (or a
//     non-finite input met check_finite); ConvergenceError only under
//     OnNonConvergence::throw_error;
//   - the report's invariants;
//   - sequential mode and fully fallen-back solves equal stepping bitwise;
//     converged (or fallen-back) Newton equals stepping per lane within
//     8 kappa (defect + 8 eps |s|), kappa = the lane's perturbation
//     amplification and defect = max_t |s_t - f(s_{t-1})| of the result,
//     with NaN exactly where stepping gives NaN;
//   - then, on some inputs, flashrnn::backward at the returned trajectory:
//     no exception, no write outside its output views, a second call
//     bitwise equal, and grad_u / grad_p / grad_s0 equal to the adjoint
//     recursion (in double) within 64 eps |pre-activations| kappa |lambda|.
// The reference stepping and adjoint are written here, independently of the
// solver, reading every view through View::operator().
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "flashrnn/flashrnn.hpp"

namespace {

using namespace flashrnn;

/// What the run exercised, printed at exit when FLASHRNN_FUZZ_STATS is set.
struct Stats {
  long inputs = 0, invalid = 0, convergence_error = 0, kept_unconverged = 0, newton_solves = 0,
       fell_back = 0, bitwise = 0, lanes_compared = 0, lanes_ill_conditioned = 0,
       nonfinite_inputs = 0, backward_calls = 0, backward_lanes_compared = 0,
       backward_ill_conditioned = 0;
  ~Stats() {
    if (!std::getenv("FLASHRNN_FUZZ_STATS") || inputs == 0) return;
    std::fprintf(stderr,
                 "fuzz_forward stats: %ld inputs, %ld InvalidArgument (as planted/expected), %ld "
                 "ConvergenceError, %ld kept non-converged, %ld Newton solves checked (%ld with "
                 "fallback), %ld bitwise-checked solves, %ld lanes compared within bound, %ld "
                 "ill-conditioned lanes (NaN pattern only), %ld with non-finite inputs; backward: %ld "
                 "calls, %ld lanes compared with the adjoint, %ld ill-conditioned lanes\n",
                 inputs, invalid, convergence_error, kept_unconverged, newton_solves, fell_back,
                 bitwise, lanes_compared, lanes_ill_conditioned, nonfinite_inputs, backward_calls,
                 backward_lanes_compared, backward_ill_conditioned);
  }
};
Stats stats;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_forward: invariant violated: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}
#define FUZZ_CHECK(cond, msg)                                                               \
  do {                                                                                      \
    if (!(cond)) fail(std::string(#cond) + " -- " + (msg));                                 \
  } while (0)

enum class Plant {
  none,
  states_shape,      // states has one step too many
  output_zero_stride,
  output_overlap,    // two axes of states share a stride
  max_iters,
  damping,
  chunk_length,
  tolerance_nan,
  alias_states_u,    // states overlaps u's memory
  no_outputs,
  null_u,
  negative_stride,   // an input with a negative stride
  p_units,           // p has the wrong number of units
  count
};

const char* plant_name(Plant p) {
  static const char* names[] = {"none",          "states_shape", "output_zero_stride",
                                "output_overlap", "max_iters",    "damping",
                                "chunk_length",  "tolerance_nan", "alias_states_u",
                                "no_outputs",    "null_u",        "negative_stride",
                                "p_units"};
  return names[static_cast<int>(p)];
}

/// A strided 4-D buffer: elements live in `mem` from `offset`; everything else
/// in `mem` is a sentinel that must survive the call.
template <class S>
struct Buffer {
  std::vector<S> mem;
  View<S> view;
};

/// Strides for sizes n (t, b, c, h): axes nested in the order `perm`
/// (innermost first), each with a little padding; optionally one input axis
/// broadcast (stride 0).
template <class S>
Buffer<S> make_buffer(FuzzedDataProvider& fdp, const index_t n[4], bool allow_broadcast) {
  static const int perms[24][4] = {
      {3, 2, 1, 0}, {3, 2, 0, 1}, {3, 1, 2, 0}, {3, 1, 0, 2}, {3, 0, 2, 1}, {3, 0, 1, 2},
      {2, 3, 1, 0}, {2, 3, 0, 1}, {2, 1, 3, 0}, {2, 1, 0, 3}, {2, 0, 3, 1}, {2, 0, 1, 3},
      {1, 3, 2, 0}, {1, 3, 0, 2}, {1, 2, 3, 0}, {1, 2, 0, 3}, {1, 0, 3, 2}, {1, 0, 2, 3},
      {0, 3, 2, 1}, {0, 3, 1, 2}, {0, 2, 3, 1}, {0, 2, 1, 3}, {0, 1, 3, 2}, {0, 1, 2, 3}};
  const int* perm = perms[fdp.ConsumeIntegralInRange<int>(0, 23)];
  index_t stride[4];
  index_t next = fdp.ConsumeIntegralInRange<index_t>(1, 2);  // 2: interleaved with a gap
  for (int i = 0; i < 4; ++i) {
    stride[perm[i]] = next;
    next = next * n[perm[i]] + fdp.ConsumeIntegralInRange<index_t>(0, 2);
  }
  if (allow_broadcast && fdp.ConsumeIntegralInRange<int>(0, 7) == 0)
    stride[fdp.ConsumeIntegralInRange<int>(0, 3)] = 0;
  const index_t offset = fdp.ConsumeIntegralInRange<index_t>(0, 3);
  index_t extent = 1;
  for (int i = 0; i < 4; ++i) extent += (n[i] - 1) * stride[i];
  Buffer<S> buf;
  buf.mem.assign(static_cast<size_t>(offset + extent + 3), static_cast<S>(-12345.0));
  buf.view = View<S>{buf.mem.data() + offset, n[0], n[1], n[2], n[3],
                     stride[0], stride[1], stride[2], stride[3]};
  return buf;
}

template <class S>
S decode_value(FuzzedDataProvider& fdp, double scale, bool allow_special) {
  const int kind = fdp.ConsumeIntegralInRange<int>(0, allow_special ? 31 : 27);
  switch (kind) {
    case 28: return std::numeric_limits<S>::quiet_NaN();
    case 29: return std::numeric_limits<S>::infinity();
    case 30: return -std::numeric_limits<S>::infinity();
    case 31: return std::numeric_limits<S>::denorm_min() * static_cast<S>(fdp.ConsumeIntegralInRange<int>(1, 9));
    default: {
      const double x = static_cast<double>(fdp.ConsumeIntegralInRange<int>(-1000, 1000)) / 1000.0;
      return static_cast<S>(scale * x);
    }
  }
}

template <class S>
void fill(FuzzedDataProvider& fdp, Buffer<S>& b, double scale, bool allow_special) {
  const View<S>& v = b.view;
  for (index_t t = 0; t < v.steps; ++t)
    for (index_t bb = 0; bb < v.batch; ++bb)
      for (index_t c = 0; c < v.channels; ++c)
        for (index_t h = 0; h < v.units; ++h) v(t, bb, c, h) = decode_value<S>(fdp, scale, allow_special);
}

template <class S>
bool all_finite(const View<const S>& v) {
  if (v.data == nullptr) return true;
  for (index_t t = 0; t < v.steps; ++t)
    for (index_t b = 0; b < v.batch; ++b)
      for (index_t c = 0; c < v.channels; ++c)
        for (index_t h = 0; h < v.units; ++h)
          if (!std::isfinite(v(t, b, c, h))) return false;
  return true;
}

/// Elements of `mem` addressed by view `v` (for the sentinel check).
template <class S>
std::vector<char> addressed(const Buffer<S>& b) {
  std::vector<char> mark(b.mem.size(), 0);
  const View<S>& v = b.view;
  for (index_t t = 0; t < v.steps; ++t)
    for (index_t bb = 0; bb < v.batch; ++bb)
      for (index_t c = 0; c < v.channels; ++c)
        for (index_t h = 0; h < v.units; ++h) mark[static_cast<size_t>(&v(t, bb, c, h) - b.mem.data())] = 1;
  return mark;
}

template <class S>
bool same_bits(S a, S b) {
  return std::memcmp(&a, &b, sizeof(S)) == 0 || (std::isnan(a) && std::isnan(b));
}

/// Sentinel check: elements of `b.mem` outside view `v` (or all, if v is absent) untouched.
template <class S>
void check_untouched_outside(const Buffer<S>& b, bool present, const std::string& what) {
  if (present) {
    const auto mark = addressed(b);
    for (size_t i = 0; i < b.mem.size(); ++i)
      if (!mark[i]) FUZZ_CHECK(b.mem[i] == static_cast<S>(-12345.0), "write outside " + what);
  } else {
    for (S x : b.mem) FUZZ_CHECK(x == static_cast<S>(-12345.0), what + " written though absent");
  }
}

/// flashrnn::backward at the trajectory the forward call returned: random
/// upstream gradients and output layouts; checks safety (no exception, no
/// write outside the views, inputs untouched, a second call bitwise equal) and
/// compares with an adjoint recursion written here in double, on lanes where
/// the reverse amplification keeps the comparison meaningful.
template <class Cell, class S>
void check_backward(FuzzedDataProvider& fdp, const View<const S>& uv, const View<const S>& pv,
                    const View<const S>& s0v, const View<const S>& stv, const Context& ctx,
                    const std::string& where) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  const index_t T = uv.steps, B = uv.batch, H = uv.units;
  const index_t ngs[4] = {T, B, K, H}, ngf[4] = {1, B, K, H}, ngu[4] = {T, B, G, H},
                ngp[4] = {1, 1, P, H}, ngs0[4] = {1, B, K, H};
  const bool with_gs = fdp.ConsumeBool(), with_gf = fdp.ConsumeBool();
  const bool with_gp = fdp.ConsumeBool(), with_gs0 = fdp.ConsumeBool();
  const bool with_gu = fdp.ConsumeBool() || (!with_gp && !with_gs0);
  auto gs = make_buffer<S>(fdp, ngs, true);
  auto gf = make_buffer<S>(fdp, ngf, true);
  auto gu = make_buffer<S>(fdp, ngu, false);
  auto gp = make_buffer<S>(fdp, ngp, false);
  auto gs0 = make_buffer<S>(fdp, ngs0, false);
  fill(fdp, gs, 1.0, false);
  fill(fdp, gf, 1.0, false);
  const View<const S> gsv = with_gs ? View<const S>(gs.view) : View<const S>{};
  const View<const S> gfv = with_gf ? View<const S>(gf.view) : View<const S>{};
  const View<S> guv = with_gu ? gu.view : View<S>{}, gpv = with_gp ? gp.view : View<S>{},
                gs0v = with_gs0 ? gs0.view : View<S>{};
  const std::vector<S> gs_before = gs.mem, gf_before = gf.mem;
  try {
    backward<Cell, S>(uv, pv, s0v, stv, gsv, gfv, guv, gpv, gs0v, ctx);
  } catch (const std::exception& e) {
    fail("backward threw on valid arguments: " + std::string(e.what()) + " " + where);
  }
  FUZZ_CHECK(std::equal(gs.mem.begin(), gs.mem.end(), gs_before.begin(), same_bits<S>), "grad_states modified: " + where);
  FUZZ_CHECK(std::equal(gf.mem.begin(), gf.mem.end(), gf_before.begin(), same_bits<S>), "grad_final modified: " + where);
  check_untouched_outside(gu, with_gu, "grad_u: " + where);
  check_untouched_outside(gp, with_gp, "grad_p: " + where);
  check_untouched_outside(gs0, with_gs0, "grad_s0: " + where);
  {  // deterministic: the same call again gives the same bits
    auto gu2 = gu, gp2 = gp, gs02 = gs0;
    gu2.view.data = gu2.mem.data() + (gu.view.data - gu.mem.data());
    gp2.view.data = gp2.mem.data() + (gp.view.data - gp.mem.data());
    gs02.view.data = gs02.mem.data() + (gs0.view.data - gs0.mem.data());
    backward<Cell, S>(uv, pv, s0v, stv, gsv, gfv, with_gu ? gu2.view : View<S>{},
                      with_gp ? gp2.view : View<S>{}, with_gs0 ? gs02.view : View<S>{}, ctx);
    FUZZ_CHECK(std::equal(gu.mem.begin(), gu.mem.end(), gu2.mem.begin(), same_bits<S>) &&
                   std::equal(gp.mem.begin(), gp.mem.end(), gp2.mem.begin(), same_bits<S>) &&
                   std::equal(gs0.mem.begin(), gs0.mem.end(), gs02.mem.begin(), same_bits<S>),
               "backward not deterministic: " + where);
  }

  // Reference adjoint in double at the same (S-precision) trajectory.
  const double eps = std::numeric_limits<S>::epsilon();
  std::vector<double> ref_gp(static_cast<size_t>(P * H), 0.0);
  std::vector<char> p_ok(static_cast<size_t>(H), 1);
  std::vector<double> p_tol(static_cast<size_t>(H), 0.0);
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h) {
      double pl[P > 0 ? P : 1], lam[K] = {}, A_next[K * K] = {};
      double M = 1.0, scale = 1.0, kappa_t = 1.0, kappa = 1.0;
      for (int q = 0; q < P; ++q) pl[q] = static_cast<double>(pv(0, 0, q, h));
      std::vector<double> ref_gu(static_cast<size_t>(T * G));
      double ref_gs0[K] = {}, lane_gp[P > 0 ? P : 1] = {};
      for (index_t t = T - 1; t >= 0; --t) {
        double g[K];
        for (int k = 0; k < K; ++k) {
          g[k] = gsv.data ? static_cast<double>(gsv(t, b, k, h)) : 0.0;
          if (t == T - 1 && gfv.data) g[k] += static_cast<double>(gfv(0, b, k, h));
          double back = 0.0;
          for (int i = 0; i < K; ++i) back += A_next[i * K + k] * lam[i];
          g[k] += t == T - 1 ? 0.0 : back;
        }
        for (int k = 0; k < K; ++k) lam[k] = g[k];
        double prev[K], ul[G], f[K], A[K * K], Ju[K * G], Jp[K * (P > 0 ? P : 1)];
        for (int k = 0; k < K; ++k)
          prev[k] = t == 0 ? (s0v.data ? static_cast<double>(s0v(0, b, k, h)) : 0.0)
                           : static_cast<double>(stv(t - 1, b, k, h));
        for (int gg = 0; gg < G; ++gg) ul[gg] = static_cast<double>(uv(t, b, gg, h));
        cell_step_full_jacobian<Cell>(prev, ul, pl, f, A, Ju, Jp);
        {  // size of this step's pre-activations, |p| |s| + |u|
          double s_abs = 1.0, m = 1.0;
          for (int k = 0; k < K; ++k) s_abs = std::max(s_abs, std::fabs(prev[k]));
          for (int q = 0; q < P; ++q) m += std::fabs(pl[q]) * s_abs;
          for (int gg = 0; gg < G; ++gg) m += std::fabs(ul[gg]);
          M = std::max(M, m);
        }
        for (int gg = 0; gg < G; ++gg) {
          double acc = 0.0;
          for (int i = 0; i < K; ++i) acc += Ju[i * G + gg] * lam[i];
          ref_gu[static_cast<size_t>(t * G + gg)] = acc;
          scale = std::max(scale, std::fabs(acc));
        }
        for (int q = 0; q < P; ++q)
          for (int i = 0; i < K; ++i) lane_gp[q] += Jp[i * (P > 0 ? P : 1) + q] * lam[i];
        for (int k = 0; k < K; ++k) scale = std::max(scale, std::fabs(lam[k]));
        double norm = 0.0;  // ||A^T||_inf = max column sum of |A|
        for (int k = 0; k < K; ++k) {
          double col = 0.0;
          for (int i = 0; i < K; ++i) col += std::fabs(A[i * K + k]);
          norm = std::max(norm, col);
        }
        kappa_t = std::min(1.0 + norm * kappa_t, 1e300);
        kappa = std::max(kappa, kappa_t);
        if (std::isnan(kappa_t)) kappa = std::numeric_limits<double>::infinity();
        if (t == 0)
          for (int k = 0; k < K; ++k) {
            double acc = 0.0;
            for (int i = 0; i < K; ++i) acc += A[i * K + k] * lam[i];
            ref_gs0[k] = acc;
            scale = std::max(scale, std::fabs(acc));
          }
        for (int i = 0; i < K * K; ++i) A_next[i] = A[i];
      }
      for (int q = 0; q < P; ++q) ref_gp[static_cast<size_t>(q * H + h)] += lane_gp[q];
      // Rounding of the S-precision Jacobians (relative ~eps times the size of
      // the pre-activations) amplified by the reverse recursion.
      const double tol = 64.0 * eps * M * kappa * scale;
      const bool ok = tol <= 1e-2 * scale && std::isfinite(tol);
      p_tol[static_cast<size_t>(h)] += tol * static_cast<double>(T);
      if (!ok) {
        p_ok[static_cast<size_t>(h)] = 0;
        ++stats.backward_ill_conditioned;
        continue;
      }
      ++stats.backward_lanes_compared;
      if (guv.data)
        for (index_t t = 0; t < T; ++t)
          for (int gg = 0; gg < G; ++gg) {
            const double got = static_cast<double>(guv(t, b, gg, h)), want = ref_gu[static_cast<size_t>(t * G + gg)];
            char detail[200];
            std::snprintf(detail, sizeof detail, "grad_u(t=%ld, g=%d) = %.6g, adjoint %.6g, tol %.3g: ",
                          static_cast<long>(t), gg, got, want, tol);
            FUZZ_CHECK(std::fabs(got - want) <= tol, detail + where);
          }
      if (gs0v.data)
        for (int k = 0; k < K; ++k) {
          const double got = static_cast<double>(gs0v(0, b, k, h));
          char detail[200];
          std::snprintf(detail, sizeof detail, "grad_s0(k=%d) = %.6g, adjoint %.6g, tol %.3g: ", k, got,
                        ref_gs0[k], tol);
          FUZZ_CHECK(std::fabs(got - ref_gs0[k]) <= tol, detail + where);
        }
    }
  if (gpv.data)
    for (index_t h = 0; h < H; ++h) {
      if (!p_ok[static_cast<size_t>(h)]) continue;
      for (int q = 0; q < P; ++q) {
        const double got = static_cast<double>(gpv(0, 0, q, h)), want = ref_gp[static_cast<size_t>(q * H + h)];
        const double tol = p_tol[static_cast<size_t>(h)] + 8.0 * eps * std::fabs(want);
        char detail[200];
        std::snprintf(detail, sizeof detail, "grad_p(q=%d, h=%ld) = %.6g, adjoint %.6g, tol %.3g: ", q,
                      static_cast<long>(h), got, want, tol);
        FUZZ_CHECK(std::fabs(got - want) <= tol, detail + where);
      }
    }
}

template <class Cell, class S>
void run(FuzzedDataProvider& fdp) {
  constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
  // ---- shape, threads, options ----
  const bool long_lane = fdp.ConsumeIntegralInRange<int>(0, 15) == 0;  // > 512 steps: blocked scans
  const index_t T = long_lane ? fdp.ConsumeIntegralInRange<index_t>(513, 1100)
                              : fdp.ConsumeIntegralInRange<index_t>(1, 40);
  const index_t B = fdp.ConsumeIntegralInRange<index_t>(1, long_lane ? 1 : 3);
  const index_t H = fdp.ConsumeIntegralInRange<index_t>(1, long_lane ? 2 : 4);
  Context ctx;
  ctx.num_threads = fdp.ConsumeIntegralInRange<int>(1, 3);

  SolverOptions o;
  o.mode = static_cast<Mode>(fdp.ConsumeIntegralInRange<int>(0, 3));
  o.max_iters = fdp.ConsumeIntegralInRange<int>(1, 60);
  static const double tols[] = {-1.0, -1.0, 0.0, 1e-14, 1e-10, 1e-6, 1e-3, 1.0};
  o.atol = tols[fdp.ConsumeIntegralInRange<int>(0, 7)];
  o.rtol = tols[fdp.ConsumeIntegralInRange<int>(0, 7)];
  static const double dampings[] = {1.0, 1.0, 1.0, 0.5, 0.25, 0.9, 0.05, 1e-300};
  o.damping = dampings[fdp.ConsumeIntegralInRange<int>(0, 7)];
  o.chunk_length = fdp.ConsumeBool() ? 0 : fdp.ConsumeIntegralInRange<index_t>(1, T + 3);
  o.on_nonconvergence = static_cast<OnNonConvergence>(fdp.ConsumeIntegralInRange<int>(0, 2));
  o.check_finite = fdp.ConsumeBool();
  const Plant plant = fdp.ConsumeIntegralInRange<int>(0, 3) == 0
                          ? static_cast<Plant>(fdp.ConsumeIntegralInRange<int>(1, static_cast<int>(Plant::count) - 1))
                          : Plant::none;
  static const double scales[] = {0.1, 1.0, 3.0, 10.0, 1e4};
  const double p_scale = scales[fdp.ConsumeIntegralInRange<int>(0, 4)];
  const double u_scale = scales[fdp.ConsumeIntegralInRange<int>(0, 4)];
  const bool specials = fdp.ConsumeIntegralInRange<int>(0, 3) == 0;
  const bool with_s0 = fdp.ConsumeBool(), with_final = fdp.ConsumeBool();
  const bool with_states = !with_final || fdp.ConsumeBool();

  // ---- buffers ----
  const index_t nu[4] = {T, B, G, H}, np_[4] = {1, 1, P, H}, ns0[4] = {1, B, K, H},
                nst[4] = {plant == Plant::states_shape ? T + 1 : T, B, K, H}, nfin[4] = {1, B, K, H};
  auto u = make_buffer<S>(fdp, nu, true);
  auto p = make_buffer<S>(fdp, np_, true);
  auto s0 = make_buffer<S>(fdp, ns0, true);
  auto st = make_buffer<S>(fdp, nst, false);
  auto fin = make_buffer<S>(fdp, nfin, false);
  fill(fdp, u, u_scale, specials);
  fill(fdp, p, p_scale, specials);
  fill(fdp, s0, 1.0, specials);

  View<const S> uv = u.view, pv = p.view, s0v = with_s0 ? View<const S>(s0.view) : View<const S>{};
  View<S> stv = with_states ? st.view : View<S>{}, finv = with_final ? fin.view : View<S>{};

  // Before any planted error: a negative stride or a wrong size would make
  // this read outside the buffers.
  const bool finite_inputs = all_finite(uv) && all_finite(pv) && all_finite(s0v);
  bool expect_invalid = false;
  std::vector<S> arena;  // alias_states_u: u and states in one allocation
  switch (plant) {
    case Plant::none: break;
    case Plant::states_shape: expect_invalid = stv.data != nullptr; break;
    case Plant::output_zero_stride: {
      // Zero the stride of an axis of size > 1 of whichever output exists.
      View<S>& out = stv.data ? stv : finv;
      if (out.steps > 1) out.stride_t = 0, expect_invalid = true;
      else if (out.batch > 1) out.stride_b = 0, expect_invalid = true;
      else if (out.channels > 1) out.stride_c = 0, expect_invalid = true;
      else if (out.units > 1) out.stride_h = 0, expect_invalid = true;
      break;
    }
    case Plant::output_overlap:
      // Units take the channel stride: (c, h) and (c + 1, h - 1)-like pairs
      // collide when both axes have more than one element.
      if (stv.data && stv.channels > 1 && stv.units > 1) {
        stv.stride_h = stv.stride_c;
        expect_invalid = true;
      }
      break;
    case Plant::max_iters: o.max_iters = fdp.ConsumeIntegralInRange<int>(-3, 0); expect_invalid = true; break;
    case Plant::damping: {
      static const double bad[] = {0.0, -0.5, 1.5, std::numeric_limits<double>::quiet_NaN(),
                                   std::numeric_limits<double>::infinity()};
      o.damping = bad[fdp.ConsumeIntegralInRange<int>(0, 4)];
      expect_invalid = true;
      break;
    }
    case Plant::chunk_length: o.chunk_length = -fdp.ConsumeIntegralInRange<index_t>(1, 5); expect_invalid = true; break;
    case Plant::tolerance_nan:
      (fdp.ConsumeBool() ? o.atol : o.rtol) = std::numeric_limits<double>::quiet_NaN();
      expect_invalid = true;
      break;
    case Plant::alias_states_u:
      if (stv.data) {
        // states starts on u's last addressed element.
        const index_t u_last = (T - 1) * uv.stride_t + (B - 1) * uv.stride_b + (G - 1) * uv.stride_c +
                               (H - 1) * uv.stride_h;
        const index_t st_extent = (T - 1) * stv.stride_t + (B - 1) * stv.stride_b +
                                  (K - 1) * stv.stride_c + (H - 1) * stv.stride_h + 1;
        arena.assign(static_cast<size_t>(u_last + st_extent + 1), S(0));
        View<S> ua = u.view;
        for (index_t t = 0; t < T; ++t)
          for (index_t b = 0; b < B; ++b)
            for (index_t g = 0; g < G; ++g)
              for (index_t h = 0; h < H; ++h)
                arena[static_cast<size_t>(t * ua.stride_t + b * ua.stride_b + g * ua.stride_c + h * ua.stride_h)] =
                    ua(t, b, g, h);
        uv.data = arena.data();
        stv.data = arena.data() + u_last;
        expect_invalid = true;
      }
      break;
    case Plant::no_outputs: stv = View<S>{}; finv = View<S>{}; expect_invalid = true; break;
    case Plant::null_u: uv.data = nullptr; expect_invalid = true; break;
    case Plant::negative_stride:
      if (fdp.ConsumeBool()) pv.stride_h = -1; else uv.stride_c = -1;
      expect_invalid = true;
      break;
    case Plant::p_units: pv.units = H + 1; expect_invalid = true; break;
    case Plant::count: break;
  }
  const bool expect_nonfinite_error = o.check_finite && !finite_inputs;
  ++stats.inputs;
  if (!finite_inputs) ++stats.nonfinite_inputs;

  // ---- call ----
  const std::vector<S> u_before = u.mem, p_before = p.mem, s0_before = s0.mem, arena_before = arena;
  SolveReport rep;
  bool threw_invalid = false, threw_convergence = false;
  std::string message;
  try {
    rep = forward<Cell, S>(uv, pv, s0v, stv, finv, o, ctx);
  } catch (const InvalidArgument& e) {
    threw_invalid = true;
    message = e.what();
  } catch (const ConvergenceError& e) {
    threw_convergence = true;
    message = e.what();
  }
  const std::string where = std::string(Cell::name) + (sizeof(S) == 8 ? "/double" : "/float") +
                            " T=" + std::to_string(T) + " B=" + std::to_string(B) + " H=" +
                            std::to_string(H) + " mode=" + to_string(o.mode) + " plant=" +
                            plant_name(plant) + " msg=" + message;

  FUZZ_CHECK(std::equal(u.mem.begin(), u.mem.end(), u_before.begin(), same_bits<S>), "u modified: " + where);
  FUZZ_CHECK(std::equal(arena.begin(), arena.end(), arena_before.begin(), same_bits<S>), "u (arena) modified: " + where);
  FUZZ_CHECK(std::equal(p.mem.begin(), p.mem.end(), p_before.begin(), same_bits<S>), "p modified: " + where);
  FUZZ_CHECK(std::equal(s0.mem.begin(), s0.mem.end(), s0_before.begin(), same_bits<S>), "s0 modified: " + where);

  if (expect_invalid || expect_nonfinite_error) {
    if (!threw_invalid) {
      // A non-finite input might sit on an axis the planted error removes
      // (null u); only a planted error must always be reported.
      FUZZ_CHECK(!expect_invalid, "planted argument error not reported: " + where);
      FUZZ_CHECK(false, "non-finite input not reported with check_finite: " + where);
    }
    FUZZ_CHECK(message.find("argument '") != std::string::npos, "message names no argument: " + where);
    FUZZ_CHECK(message.find("expected") != std::string::npos, "message has no expectation: " + where);
    ++stats.invalid;
    return;
  }
  FUZZ_CHECK(!threw_invalid, "unexpected InvalidArgument: " + where);
  if (threw_convergence) {
    FUZZ_CHECK(o.on_nonconvergence == OnNonConvergence::throw_error, "ConvergenceError under another policy: " + where);
    ++stats.convergence_error;
    return;
  }

  // ---- the report ----
  const index_t lanes = B * H;
  FUZZ_CHECK(rep.lanes == lanes, where);
  FUZZ_CHECK(rep.mode_used != Mode::automatic, where);
  FUZZ_CHECK(o.mode == Mode::automatic || rep.mode_used == o.mode, where);
  FUZZ_CHECK(rep.lanes_fell_back >= 0 && rep.lanes_fell_back <= lanes, where);
  FUZZ_CHECK(rep.iterations >= 0 && rep.iterations <= o.max_iters, where);
  FUZZ_CHECK(!(rep.final_residual < 0.0), where);
  if (rep.mode_used == Mode::sequential)
    FUZZ_CHECK(rep.iterations == 0 && rep.converged && rep.lanes_fell_back == 0 && !rep.nonfinite_detected, where);
  if (o.on_nonconvergence == OnNonConvergence::fallback_sequential)
    FUZZ_CHECK(rep.converged == (rep.lanes_fell_back == 0), where);
  else
    FUZZ_CHECK(rep.lanes_fell_back == 0, where);
  if (o.on_nonconvergence == OnNonConvergence::throw_error) FUZZ_CHECK(rep.converged, where);
  if (rep.nonfinite_detected) FUZZ_CHECK(!rep.converged, where);

  // ---- nothing written outside the output views ----
  if (stv.data) {
    const auto mark = addressed(st);
    for (size_t i = 0; i < st.mem.size(); ++i)
      if (!mark[i]) FUZZ_CHECK(st.mem[i] == static_cast<S>(-12345.0), "write outside states: " + where);
  } else {
    for (S x : st.mem) FUZZ_CHECK(x == static_cast<S>(-12345.0), "states written though absent: " + where);
  }
  if (finv.data) {
    const auto mark = addressed(fin);
    for (size_t i = 0; i < fin.mem.size(); ++i)
      if (!mark[i]) FUZZ_CHECK(fin.mem[i] == static_cast<S>(-12345.0), "write outside final_state: " + where);
  } else {
    for (S x : fin.mem) FUZZ_CHECK(x == static_cast<S>(-12345.0), "final_state written though absent: " + where);
  }
  if (stv.data && finv.data)
    for (index_t b = 0; b < B; ++b)
      for (int k = 0; k < K; ++k)
        for (index_t h = 0; h < H; ++h)
          FUZZ_CHECK(same_bits(finv(0, b, k, h), stv(T - 1, b, k, h)), "final_state != states[T-1]: " + where);

  // ---- against stepping ----
  const bool kept_unconverged = o.on_nonconvergence == OnNonConvergence::keep_last_iterate && !rep.converged;
  if (kept_unconverged) {
    ++stats.kept_unconverged;
    return;  // documented: the last iterate, flagged
  }
  const bool bitwise = rep.mode_used == Mode::sequential || rep.lanes_fell_back == lanes;
  if (bitwise) ++stats.bitwise;
  if (rep.mode_used != Mode::sequential) ++stats.newton_solves;
  if (rep.lanes_fell_back > 0) ++stats.fell_back;
  const double eps = std::numeric_limits<S>::epsilon();
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < H; ++h) {
      S pl[P > 0 ? P : 1], prev[K], prev_out[K], ul[G], f[K], A[K * K];
      for (int q = 0; q < P; ++q) pl[q] = pv(0, 0, q, h);
      for (int k = 0; k < K; ++k) prev[k] = prev_out[k] = s0v.data ? s0v(0, b, k, h) : S(0);
      double kappa_t = 1.0, kappa = 1.0, defect = 0.0, smax = 1.0;
      bool lane_nan_mismatch = false;
      std::vector<S> lane_ref(static_cast<size_t>(T * K)), lane_out(static_cast<size_t>(T * K));
      for (index_t t = 0; t < T; ++t) {
        for (int g = 0; g < G; ++g) ul[g] = uv(t, b, g, h);
        cell_step_state_jacobian<Cell>(prev, ul, pl, f, A);  // A along the stepped trajectory
        S ref_plain[K];
        cell_step<Cell>(prev, ul, pl, ref_plain);
        double norm = 0.0;
        for (int i = 0; i < K; ++i) {
          double row = 0.0;
          for (int k = 0; k < K; ++k) row += std::fabs(static_cast<double>(A[i * K + k]));
          norm = std::max(norm, row);
        }
        kappa_t = std::min(1.0 + norm * kappa_t, 1e300);
        kappa = std::max(kappa, kappa_t);  // worst over t, not the last step
        if (std::isnan(kappa_t)) kappa = std::numeric_limits<double>::infinity();  // NaN slope
        S fo[K];
        cell_step<Cell>(prev_out, ul, pl, fo);
        for (int k = 0; k < K; ++k) {
          const S out = stv.data ? stv(t, b, k, h) : (t == T - 1 ? finv(0, b, k, h) : ref_plain[k]);
          lane_ref[static_cast<size_t>(t * K + k)] = ref_plain[k];
          lane_out[static_cast<size_t>(t * K + k)] = out;
          if (std::isnan(out) != std::isnan(ref_plain[k])) lane_nan_mismatch = true;
          if (bitwise) FUZZ_CHECK(same_bits(out, ref_plain[k]), "not bitwise equal to stepping: " + where);
          defect = std::max(defect, std::fabs(static_cast<double>(out) - static_cast<double>(fo[k])));
          smax = std::max(smax, std::fabs(static_cast<double>(ref_plain[k])));
          prev[k] = ref_plain[k];
          prev_out[k] = out;
        }
      }
      FUZZ_CHECK(!lane_nan_mismatch, "NaN where stepping gives a number (or not where it does): " + where);
      const double bound = 8.0 * kappa * (defect + 8.0 * eps * smax) + 8.0 * eps * smax;
      if (!(bound <= 1e-3)) {  // ill-conditioned lane: only the NaN pattern is checked
        ++stats.lanes_ill_conditioned;
        continue;
      }
      ++stats.lanes_compared;
      for (size_t i = 0; i < lane_ref.size(); ++i) {
        if (std::isnan(lane_ref[i]) || lane_ref[i] == lane_out[i]) continue;
        const double err = std::fabs(static_cast<double>(lane_out[i]) - static_cast<double>(lane_ref[i]));
        if (!(err <= bound)) {  // the lane, for triage
          std::fprintf(stderr, "lane b=%ld h=%ld: options max_iters=%d atol=%g rtol=%g damping=%g chunk=%ld policy=%d threads=%d\n",
                       static_cast<long>(b), static_cast<long>(h), o.max_iters, o.atol, o.rtol, o.damping,
                       static_cast<long>(o.chunk_length), static_cast<int>(o.on_nonconvergence), ctx.num_threads);
          std::fprintf(stderr, "report: iterations=%d residual=%g converged=%d fell_back=%ld nonfinite=%d\n",
                       rep.iterations, rep.final_residual, rep.converged, static_cast<long>(rep.lanes_fell_back),
                       rep.nonfinite_detected);
          for (int q = 0; q < P; ++q) std::fprintf(stderr, "p[%d]=%.9g ", q, static_cast<double>(pv(0, 0, q, h)));
          for (int k = 0; k < K; ++k)
            std::fprintf(stderr, "s0[%d]=%.9g ", k, s0v.data ? static_cast<double>(s0v(0, b, k, h)) : 0.0);
          std::fprintf(stderr, "\n");
          for (index_t t = 0; t < T; ++t) {
            std::fprintf(stderr, "t=%ld u=", static_cast<long>(t));
            for (int g = 0; g < G; ++g) std::fprintf(stderr, "%.9g ", static_cast<double>(uv(t, b, g, h)));
            for (int k = 0; k < K; ++k)
              std::fprintf(stderr, " ref=%.9g out=%.9g", static_cast<double>(lane_ref[static_cast<size_t>(t * K + k)]),
                           static_cast<double>(lane_out[static_cast<size_t>(t * K + k)]));
            std::fprintf(stderr, "\n");
          }
        }
        char detail[160];
        std::snprintf(detail, sizeof detail, "Newton differs from stepping by %.3g > bound %.3g (kappa %.3g, defect %.3g): ",
                      err, bound, kappa, defect);
        FUZZ_CHECK(err <= bound, detail + where);
      }
    }

  // Backward at the returned trajectory, when it is one (finite inputs and
  // states; a converged or fallen-back solve).
  if (stv.data && finite_inputs && fdp.ConsumeBool()) {
    const View<const S> sv = stv;
    if (all_finite(sv)) {
      ++stats.backward_calls;
      check_backward<Cell, S>(fdp, uv, pv, s0v, sv, ctx, where);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  const int cell = fdp.ConsumeIntegralInRange<int>(0, 2);
  const bool dbl = fdp.ConsumeBool();
  switch (cell * 2 + (dbl ? 1 : 0)) {
    case 0: run<cells::ParaGRU, float>(fdp); break;
    case 1: run<cells::ParaGRU, double>(fdp); break;
    case 2: run<cells::ParaLSTM, float>(fdp); break;
    case 3: run<cells::ParaLSTM, double>(fdp); break;
    case 4: run<cells::DiagTanh, float>(fdp); break;
    default: run<cells::DiagTanh, double>(fdp); break;
  }
  return 0;
}
