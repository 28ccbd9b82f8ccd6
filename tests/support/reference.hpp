// Shared helpers of the CPU test suite: deterministic random problems, owned
// strided tensors in several layouts, an independent sequential reference
// (plain loops over Cell::step, no library solver code), error metrics, and
// forward-mode (Dual) gradients of sequential stepping.
#pragma once
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "flashrnn/cells/head_tanh.hpp"
#include "flashrnn/flashrnn.hpp"
#include "test_config.hpp"

namespace flashrnn_test {

using flashrnn::index_t;
using flashrnn::Mode;
using flashrnn::SolveReport;
using flashrnn::SolverOptions;
using flashrnn::View;

// ---------------------------------------------------------------- random ----

/// splitmix64: the same stream on every platform and standard library.
struct Rng {
  std::uint64_t state;
  explicit Rng(std::uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) {
    return lo + (hi - lo) * static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
  }
  int below(int n) { return static_cast<int>(next() % static_cast<std::uint64_t>(n)); }
};

// ---------------------------------------------------------------- problem ---

template <class Cell>
struct Dims {
  static constexpr int K = Cell::state_dim, G = Cell::input_dim, P = Cell::param_dim;
};

/// Canonical index of element (t, b, c, h) of a (T, B, C, H) array.
inline index_t cidx(index_t t, index_t b, index_t c, index_t h, index_t B, index_t C,
                    index_t H) {
  return ((t * B + b) * C + c) * H + h;
}

/// One forward problem in canonical fp64 storage:
///   u [t][b][g][h], p [q][h], s0 [b][k][h].
/// Values are exactly representable in the storage type under test (see round_to).
struct Problem {
  index_t T = 1, B = 1, H = 1;
  int K = 1, G = 1, P = 1;
  std::vector<double> u, p, s0;

  /// Rounds every value to S so that the fp64 reference sees exactly the
  /// inputs an S-precision solve sees (errors then measure the solver only).
  template <class S>
  Problem& round_to() {
    for (auto* v : {&u, &p, &s0})
      for (double& x : *v) x = static_cast<double>(static_cast<S>(x));
    return *this;
  }
};

/// What the random inputs look like.
enum class Inputs {
  random,     ///< trained-like: pre-activations ~ U(-2, 2), weights ~ U(-1, 1)
  saturating, ///< pre-activations ~ ±30 and ±1e4 mixed with random, weights up to ±5
  chaotic,    ///< DiagTanh-style |A_t| near / above 1: small inputs, given weight
};

/// How many state entries one recurrent weight row mixes: 1 for the diagonal
/// cells, K for a dense head. Random weights are divided by sqrt(fan_in) (the
/// scale of a layer's initialiser, e.g. nn.RNN's U(-1/sqrt(H), 1/sqrt(H))), so
/// "random" stays trained-like; chaotic weights by fan_in, so the all-`weight`
/// matrix has spectral radius `weight` as DiagTanh's a does.
template <class Cell>
struct recurrent_fan_in {
  static constexpr int value = 1;
};
template <int K>
struct recurrent_fan_in<flashrnn::cells::HeadTanh<K>> {
  static constexpr int value = K;
};

/// Random problem for `Cell`. For Inputs::chaotic, `weight` is every recurrent
/// weight (DiagTanh: a; divided by K for HeadTanh<K>); inputs are ~ U(-0.1, 0.1).
template <class Cell>
Problem make_problem(index_t T, index_t B, index_t H, std::uint64_t seed,
                     Inputs kind = Inputs::random, double weight = 1.0) {
  Problem pr;
  pr.T = T, pr.B = B, pr.H = H;
  pr.K = Dims<Cell>::K, pr.G = Dims<Cell>::G, pr.P = Dims<Cell>::P;
  Rng rng(seed);
  pr.u.resize(static_cast<size_t>(T * B * pr.G * H));
  pr.p.resize(static_cast<size_t>(pr.P * H));
  pr.s0.resize(static_cast<size_t>(B * pr.K * H));
  for (double& x : pr.u) {
    switch (kind) {
      case Inputs::random: x = rng.uniform(-2, 2); break;
      case Inputs::chaotic: x = rng.uniform(-0.1, 0.1); break;
      case Inputs::saturating: {
        const int r = rng.below(6);
        const double sign = rng.below(2) ? 1.0 : -1.0;
        x = r == 0 ? sign * 1e4 : r <= 2 ? sign * rng.uniform(25, 35) : rng.uniform(-3, 3);
        break;
      }
    }
  }
  const double fan_in = recurrent_fan_in<Cell>::value;
  for (double& x : pr.p) {
    switch (kind) {
      case Inputs::random: x = rng.uniform(-1, 1); break;
      case Inputs::chaotic: x = weight; break;
      case Inputs::saturating: x = rng.uniform(-5, 5); break;
    }
    if (fan_in > 1) x /= kind == Inputs::chaotic ? fan_in : std::sqrt(fan_in);
  }
  for (double& x : pr.s0) x = rng.uniform(-1, 1);
  return pr;
}

// ---------------------------------------------------------------- tensors ---

/// Storage layouts under test. `padded` is unit-major with gaps: channel stride
/// 1, unit stride C + 1, batch and time strides with slack, so every stride is
/// exercised and untouched padding can be checked.
enum class Layout { batch_first, time_first, padded };

inline const char* to_string(Layout l) {
  switch (l) {
    case Layout::batch_first: return "batch_first";
    case Layout::time_first: return "time_first";
    case Layout::padded: return "padded";
  }
  return "?";
}

/// An owned 4-D tensor with a View over it. Elements outside the view are
/// filled with a sentinel that a well-behaved solver never touches.
template <class S>
struct Tensor {
  std::vector<S> buf;
  View<S> view;

  static constexpr double sentinel() { return 1234.5; }

  Tensor() = default;
  // The view points into buf: copies would alias the original; moves keep it valid.
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor(Tensor&&) = default;
  Tensor& operator=(Tensor&&) = default;
  Tensor(Layout layout, index_t T, index_t B, index_t C, index_t H, double fill = sentinel()) {
    index_t size = T * B * C * H;
    if (layout == Layout::padded) size = T * (B * (H * (C + 1) + 3) + 5);
    buf.assign(static_cast<size_t>(size), static_cast<S>(fill));
    switch (layout) {
      case Layout::batch_first: view = flashrnn::batch_first(buf.data(), B, T, C, H); break;
      case Layout::time_first: view = flashrnn::time_first(buf.data(), T, B, C, H); break;
      case Layout::padded: {
        const index_t sh = C + 1, sb = H * sh + 3, st = B * sb + 5;
        view = View<S>{buf.data(), T, B, C, H, st, sb, 1, sh};
        break;
      }
    }
  }
  /// A state (1, B, K, H) tensor; a parameter tensor is Tensor(layout, 1, 1, P, H).
  S& operator()(index_t t, index_t b, index_t c, index_t h) { return view(t, b, c, h); }
  View<const S> cview() const { return View<const S>(view); }

  /// Copies canonical values in.
  void load(const std::vector<double>& canon) {
    for (index_t t = 0; t < view.steps; ++t)
      for (index_t b = 0; b < view.batch; ++b)
        for (index_t c = 0; c < view.channels; ++c)
          for (index_t h = 0; h < view.units; ++h)
            view(t, b, c, h) = static_cast<S>(
                canon[static_cast<size_t>(cidx(t, b, c, h, view.batch, view.channels, view.units))]);
  }
  /// Canonical copy out (as double).
  std::vector<double> canonical() const {
    std::vector<double> out(static_cast<size_t>(view.size()));
    for (index_t t = 0; t < view.steps; ++t)
      for (index_t b = 0; b < view.batch; ++b)
        for (index_t c = 0; c < view.channels; ++c)
          for (index_t h = 0; h < view.units; ++h)
            out[static_cast<size_t>(cidx(t, b, c, h, view.batch, view.channels, view.units))] =
                static_cast<double>(view(t, b, c, h));
    return out;
  }
  /// Number of buffer elements outside the view that no longer hold the sentinel.
  index_t touched_padding() const {
    std::vector<char> in_view(buf.size(), 0);
    for (index_t t = 0; t < view.steps; ++t)
      for (index_t b = 0; b < view.batch; ++b)
        for (index_t c = 0; c < view.channels; ++c)
          for (index_t h = 0; h < view.units; ++h)
            in_view[static_cast<size_t>(&view(t, b, c, h) - buf.data())] = 1;
    index_t n = 0;
    for (size_t i = 0; i < buf.size(); ++i)
      if (!in_view[i] && !(static_cast<double>(buf[i]) == sentinel())) ++n;
    return n;
  }
};

/// The inputs of a problem as tensors of storage type S in a layout.
template <class S>
struct Inputs4 {
  Tensor<S> u, p, s0;
  Inputs4(const Problem& pr, Layout layout)
      : u(layout, pr.T, pr.B, pr.G, pr.H),
        p(layout == Layout::padded ? Layout::padded : Layout::batch_first, 1, 1, pr.P, pr.H),
        s0(layout, 1, pr.B, pr.K, pr.H) {
    u.load(pr.u);
    p.load(pr.p);
    s0.load(pr.s0);
  }
};

// -------------------------------------------------------------- reference ---

/// Sequential stepping in precision R written with plain loops over
/// Cell::step (no library solver code). Returns canonical states [t][b][k][h].
template <class Cell, class R>
std::vector<double> reference_states(const Problem& pr, bool use_s0) {
  constexpr int K = Dims<Cell>::K, G = Dims<Cell>::G, P = Dims<Cell>::P;
  std::vector<double> out(static_cast<size_t>(pr.T * pr.B * K * pr.H));
  for (index_t b = 0; b < pr.B; ++b)
    for (index_t h = 0; h < pr.H; ++h) {
      R s[K], u[G], p[P], next[K];
      for (int q = 0; q < P; ++q) p[q] = static_cast<R>(pr.p[static_cast<size_t>(q * pr.H + h)]);
      for (int k = 0; k < K; ++k)
        s[k] = use_s0 ? static_cast<R>(pr.s0[static_cast<size_t>(cidx(0, b, k, h, pr.B, K, pr.H))])
                      : R(0);
      for (index_t t = 0; t < pr.T; ++t) {
        for (int g = 0; g < G; ++g)
          u[g] = static_cast<R>(pr.u[static_cast<size_t>(cidx(t, b, g, h, pr.B, G, pr.H))]);
        Cell::template step<R>(s, u, p, next);
        for (int k = 0; k < K; ++k) {
          s[k] = next[k];
          out[static_cast<size_t>(cidx(t, b, k, h, pr.B, K, pr.H))] = static_cast<double>(s[k]);
        }
      }
    }
  return out;
}

/// The last step of canonical states: [b][k][h].
inline std::vector<double> last_step(const std::vector<double>& states, const Problem& pr) {
  const index_t n = pr.B * pr.K * pr.H;
  return std::vector<double>(states.end() - n, states.end());
}

// ---------------------------------------------------------------- metrics ---

inline double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::fabs(x));
  return m;
}

/// max |a - b|; +inf if any element is non-finite or sizes differ.
inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(a[i] - b[i]);
    if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
    m = std::max(m, d);
  }
  return m;
}

/// Tolerance rules tied to the precision.
///  fp64: max error <= 1e-12 * max(1, max |ref|).
///  fp32 (flash-attention's rule): error of the solve against the fp64
///  reference <= 4 x the error of plain fp32 stepping against it, plus a floor
///  of a few fp32 ulps of the reference's magnitude.
struct Verdict {
  bool ok;
  double err, bound, baseline;
  std::string describe() const {
    char buf[160];
    std::snprintf(buf, sizeof buf, "err=%.3e bound=%.3e (fp32 stepping err=%.3e)", err, bound,
                  baseline);
    return buf;
  }
};

template <class S>
Verdict judge(const std::vector<double>& got, const std::vector<double>& ref64,
              const std::vector<double>& seq_same_precision) {
  const double scale = std::max(1.0, max_abs(ref64));
  const double err = max_abs_diff(got, ref64);
  if (std::is_same<S, double>::value) {
    const double bound = 1e-12 * scale;
    return {err <= bound, err, bound, 0.0};
  }
  const double base = max_abs_diff(seq_same_precision, ref64);
  const double bound = 4.0 * base + 4.0 * FLT_EPSILON * scale;
  return {err <= bound, err, bound, base};
}

// ---------------------------------------------------------- library calls ---

struct ForwardCall {
  SolverOptions opts;
  Layout layout = Layout::batch_first;
  bool use_s0 = true;
  bool want_states = true;
  bool want_final = true;
  flashrnn::Context ctx = context();
};

struct ForwardOut {
  SolveReport rep;
  std::vector<double> states, final_state;  // canonical; empty when not requested
  index_t padding_touched = 0;
};

/// flashrnn::forward on a problem with storage type S in the call's layout.
template <class Cell, class S>
ForwardOut run_forward(const Problem& pr, const ForwardCall& call) {
  Inputs4<S> in(pr, call.layout);
  Tensor<S> st(call.layout, pr.T, pr.B, pr.K, pr.H), fin(call.layout, 1, pr.B, pr.K, pr.H);
  ForwardOut out;
  out.rep = flashrnn::forward<Cell, S>(
      in.u.cview(), in.p.cview(), call.use_s0 ? in.s0.cview() : View<const S>{},
      call.want_states ? st.view : View<S>{}, call.want_final ? fin.view : View<S>{}, call.opts,
      call.ctx);
  if (call.want_states) {
    out.states = st.canonical();
    out.padding_touched += st.touched_padding();
  }
  if (call.want_final) {
    out.final_state = fin.canonical();
    out.padding_touched += fin.touched_padding();
  }
  return out;
}

inline SolverOptions options(Mode mode, index_t chunk = 0) {
  SolverOptions o;
  o.mode = mode;
  o.chunk_length = chunk;
  return o;
}

inline std::string mode_name(Mode m, index_t chunk) {
  std::string s = flashrnn::to_string(m);
  if (m == Mode::newton_chunked) s += "(chunk=" + std::to_string(chunk) + ")";
  return s;
}

// --------------------------------------------------------------- gradients --

/// Weights of the loss L = Σ_t w_t · s_t + w_final · s_{T-1}, canonical.
struct LossWeights {
  std::vector<double> w_states;  // [t][b][k][h], empty = 0
  std::vector<double> w_final;   // [b][k][h], empty = 0
};

inline LossWeights make_loss(const Problem& pr, std::uint64_t seed, bool states, bool final) {
  Rng rng(seed);
  LossWeights w;
  if (states) {
    w.w_states.resize(static_cast<size_t>(pr.T * pr.B * pr.K * pr.H));
    for (double& x : w.w_states) x = rng.uniform(-1, 1);
  }
  if (final) {
    w.w_final.resize(static_cast<size_t>(pr.B * pr.K * pr.H));
    for (double& x : w.w_final) x = rng.uniform(-1, 1);
  }
  return w;
}

/// Rounds the weights to S (as Problem::round_to).
template <class S>
void round_loss(LossWeights& w) {
  for (auto* v : {&w.w_states, &w.w_final})
    for (double& x : *v) x = static_cast<double>(static_cast<S>(x));
}

/// L in fp64 for canonical states.
inline double loss_value(const Problem& pr, const LossWeights& w,
                         const std::vector<double>& states) {
  double L = 0;
  if (!w.w_states.empty())
    for (size_t i = 0; i < states.size(); ++i) L += w.w_states[i] * states[i];
  if (!w.w_final.empty()) {
    const auto fin = last_step(states, pr);
    for (size_t i = 0; i < fin.size(); ++i) L += w.w_final[i] * fin[i];
  }
  return L;
}

/// Central differences of L with respect to canonical array `x` of the problem
/// (u, p or s0), at the indices `which` (all when empty).
template <class Cell>
std::vector<double> finite_differences(Problem pr, std::vector<double> Problem::*field,
                                       const LossWeights& w, bool use_s0,
                                       const std::vector<size_t>& which) {
  std::vector<double>& x = pr.*field;
  std::vector<double> g(x.size(), 0.0);
  std::vector<size_t> idx = which;
  if (idx.empty())
    for (size_t i = 0; i < x.size(); ++i) idx.push_back(i);
  for (size_t i : idx) {
    const double x0 = x[i], h = 1e-5 * std::max(1.0, std::fabs(x0));
    x[i] = x0 + h;
    const double Lp = loss_value(pr, w, reference_states<Cell, double>(pr, use_s0));
    x[i] = x0 - h;
    const double Lm = loss_value(pr, w, reference_states<Cell, double>(pr, use_s0));
    x[i] = x0;
    g[i] = (Lp - Lm) / (2 * h);
  }
  return g;
}

/// Gradients in canonical layout: u [t][b][g][h], p [q][h], s0 [b][k][h].
struct Grads {
  std::vector<double> u, p, s0;
};

/// Backprop-through-time of sequential stepping, computed independently of
/// the library's adjoint: forward-mode Dual<R, N> through the whole run.
///  p and s0: one run per lane with P + K tangents.
///  u: for every step t0, a run from t0 to the end with G tangents on u_{t0}
///     (O(T^2) per lane; keep T moderate).
template <class Cell, class R>
Grads dual_gradients(const Problem& pr, const LossWeights& w, bool use_s0) {
  constexpr int K = Dims<Cell>::K, G = Dims<Cell>::G, P = Dims<Cell>::P;
  const index_t T = pr.T, B = pr.B, H = pr.H;
  Grads gr;
  gr.u.assign(static_cast<size_t>(T * B * G * H), 0.0);
  gr.p.assign(static_cast<size_t>(P * H), 0.0);
  gr.s0.assign(static_cast<size_t>(B * K * H), 0.0);
  auto wst = [&](index_t t, index_t b, int k, index_t h) -> R {
    R x = w.w_states.empty() ? R(0)
                             : static_cast<R>(w.w_states[static_cast<size_t>(cidx(t, b, k, h, B, K, H))]);
    if (t == T - 1 && !w.w_final.empty())
      x += static_cast<R>(w.w_final[static_cast<size_t>(cidx(0, b, k, h, B, K, H))]);
    return x;
  };
  auto uval = [&](index_t t, index_t b, int g, index_t h) {
    return static_cast<R>(pr.u[static_cast<size_t>(cidx(t, b, g, h, B, G, H))]);
  };
  for (index_t h = 0; h < H; ++h) {
    R pv[P];
    for (int q = 0; q < P; ++q) pv[q] = static_cast<R>(pr.p[static_cast<size_t>(q * H + h)]);
    for (index_t b = 0; b < B; ++b) {
      R s0v[K];
      for (int k = 0; k < K; ++k)
        s0v[k] = use_s0 ? static_cast<R>(pr.s0[static_cast<size_t>(cidx(0, b, k, h, B, K, H))]) : R(0);
      {  // p and s0 tangents
        using D = flashrnn::Dual<R, P + K>;
        D s[K], u[G], p[P], next[K];
        for (int q = 0; q < P; ++q) p[q] = D::variable(pv[q], q);
        for (int k = 0; k < K; ++k) s[k] = D::variable(s0v[k], P + k);
        R acc[P + K] = {};
        for (index_t t = 0; t < T; ++t) {
          for (int g = 0; g < G; ++g) u[g] = D(uval(t, b, g, h));
          Cell::template step<D>(s, u, p, next);
          for (int k = 0; k < K; ++k) {
            s[k] = next[k];
            const R wk = wst(t, b, k, h);
            for (int i = 0; i < P + K; ++i) acc[i] += wk * s[k].d[i];
          }
        }
        for (int q = 0; q < P; ++q) gr.p[static_cast<size_t>(q * H + h)] += static_cast<double>(acc[q]);
        for (int k = 0; k < K; ++k)
          gr.s0[static_cast<size_t>(cidx(0, b, k, h, B, K, H))] = static_cast<double>(acc[P + k]);
      }
      {  // u tangents, one start step at a time
        using D = flashrnn::Dual<R, G>;
        std::vector<R> traj(static_cast<size_t>((T + 1) * K));  // traj[t+1] = s_t, traj[0] = s0
        for (int k = 0; k < K; ++k) traj[static_cast<size_t>(k)] = s0v[k];
        for (index_t t = 0; t < T; ++t) {
          R uu[G];
          for (int g = 0; g < G; ++g) uu[g] = uval(t, b, g, h);
          Cell::template step<R>(&traj[static_cast<size_t>(t * K)], uu, pv,
                                 &traj[static_cast<size_t>((t + 1) * K)]);
        }
        D pd[P];
        for (int q = 0; q < P; ++q) pd[q] = D(pv[q]);
        for (index_t t0 = 0; t0 < T; ++t0) {
          D s[K], u[G], next[K];
          for (int k = 0; k < K; ++k) s[k] = D(traj[static_cast<size_t>(t0 * K + k)]);
          R acc[G] = {};
          for (index_t t = t0; t < T; ++t) {
            for (int g = 0; g < G; ++g)
              u[g] = t == t0 ? D::variable(uval(t, b, g, h), g) : D(uval(t, b, g, h));
            Cell::template step<D>(s, u, pd, next);
            for (int k = 0; k < K; ++k) {
              s[k] = next[k];
              const R wk = wst(t, b, k, h);
              for (int g = 0; g < G; ++g) acc[g] += wk * s[k].d[g];
            }
          }
          for (int g = 0; g < G; ++g)
            gr.u[static_cast<size_t>(cidx(t0, b, g, h, B, G, H))] = static_cast<double>(acc[g]);
        }
      }
    }
  }
  return gr;
}

struct BackwardCall {
  Layout layout = Layout::batch_first;
  bool use_s0 = true;
  bool want_u = true, want_p = true, want_s0 = true;
  flashrnn::Context ctx = context();
};

/// flashrnn::backward at the trajectory `states` (canonical, as S values).
template <class Cell, class S>
Grads run_backward(const Problem& pr, const LossWeights& w, const std::vector<double>& states,
                   const BackwardCall& call) {
  Inputs4<S> in(pr, call.layout);
  Tensor<S> st(call.layout, pr.T, pr.B, pr.K, pr.H);
  st.load(states);
  Tensor<S> gst(call.layout, pr.T, pr.B, pr.K, pr.H), gfin(call.layout, 1, pr.B, pr.K, pr.H);
  if (!w.w_states.empty()) gst.load(w.w_states);
  if (!w.w_final.empty()) gfin.load(w.w_final);
  Tensor<S> du(call.layout, pr.T, pr.B, pr.G, pr.H),
      dp(call.layout == Layout::padded ? Layout::padded : Layout::batch_first, 1, 1, pr.P, pr.H),
      ds0(call.layout, 1, pr.B, pr.K, pr.H);
  flashrnn::backward<Cell, S>(in.u.cview(), in.p.cview(),
                              call.use_s0 ? in.s0.cview() : View<const S>{}, st.cview(),
                              w.w_states.empty() ? View<const S>{} : gst.cview(),
                              w.w_final.empty() ? View<const S>{} : gfin.cview(),
                              call.want_u ? du.view : View<S>{}, call.want_p ? dp.view : View<S>{},
                              call.want_s0 ? ds0.view : View<S>{}, call.ctx);
  Grads g;
  if (call.want_u) g.u = du.canonical();
  if (call.want_p) g.p = dp.canonical();
  if (call.want_s0) g.s0 = ds0.canonical();
  return g;
}

}  // namespace flashrnn_test
