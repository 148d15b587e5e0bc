// Built-in vector fields dy/dt = f(t, y; p).
//
// Every dynamics type evaluates f on a *lane block*: L trajectories stored structure-of-arrays,
// y[d * L + l] is component d of lane l. Each lane performs exactly the same sequence of scalar
// operations whatever L is (explicit fma, no reassociation), so a trajectory's result does not
// depend on the block it was placed in, on its neighbours, or on the thread that ran it.
//
// Parameters are either shared by the block (PerLane = false: p[j]) or per lane
// (PerLane = true: p[j * L + l]); the flat order is the Python `.params` order.
#pragma once
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "config.hpp"
#include "dual.hpp"
#include "math.hpp"
#include "simd.hpp"

namespace odefast {

template <int L, bool PerLane, class S>
ODEFAST_HD ODEFAST_INLINE S param(const S* p, int j, int l) {
  return PerLane ? p[j * L + l] : p[j];
}

// Lorenz: params (sigma, rho, beta).
template <class S> struct Lorenz {
  using scalar = S;
  static constexpr int kStaticDim = 3;  // lets the integrator unroll over components
  S* scratch = nullptr;  // unused: no intermediate buffers
  std::size_t scratch_size(int) const { return 0; }
  ODEFAST_HD int dim() const { return 3; }
  ODEFAST_HD int n_params() const { return 3; }
  template <int L, bool PerLane>
  ODEFAST_HD void eval(const S* /*t*/, const S* __restrict y, S* __restrict dy, const S* __restrict p) const {
    ODEFAST_LANES
    for (int l = 0; l < L; ++l) {
      const S sigma = param<L, PerLane>(p, 0, l), rho = param<L, PerLane>(p, 1, l),
              beta = param<L, PerLane>(p, 2, l);
      const S x = y[l], yy = y[L + l], z = y[2 * L + l];
      dy[l] = sigma * (yy - x);
      dy[L + l] = x * (rho - z) - yy;
      dy[2 * L + l] = x * yy - beta * z;
    }
  }
};

// Linear: f = A y + b, params = A (row-major, D x D) then b (D).
template <class S> struct Linear {
  using scalar = S;
  S* scratch = nullptr;  // unused: no intermediate buffers
  std::size_t scratch_size(int) const { return 0; }
  int D = 0;
  ODEFAST_HD int dim() const { return D; }
  ODEFAST_HD int n_params() const { return D * D + D; }
  template <int L, bool PerLane>
  ODEFAST_HD void eval(const S* /*t*/, const S* y, S* dy, const S* p) const {
    for (int i = 0; i < D; ++i) {
      S acc[L];
      for (int l = 0; l < L; ++l) acc[l] = S(0);
      for (int j = 0; j < D; ++j)
        for (int l = 0; l < L; ++l)
          acc[l] = math::fma(param<L, PerLane>(p, i * D + j, l), y[j * L + l], acc[l]);
      for (int l = 0; l < L; ++l) dy[i * L + l] = acc[l] + param<L, PerLane>(p, D * D + i, l);
    }
  }
};

// Newtonian gravity of n bodies in `dim` dimensions: state = positions (n*dim) then velocities;
// params = masses (n). a_i = sum_{j != i} G m_j (x_j - x_i) / (|x_j - x_i|^2 + eps^2)^{3/2}.
template <class S> struct NBody {
  using scalar = S;
  S* scratch = nullptr;  // unused: no intermediate buffers
  std::size_t scratch_size(int) const { return 0; }
  int n = 0, dim_space = 2;
  S G = S(1), softening = S(0);
  ODEFAST_HD int dim() const { return 2 * n * dim_space; }
  ODEFAST_HD int n_params() const { return n; }
  template <int L, bool PerLane>
  ODEFAST_HD void eval(const S* /*t*/, const S* y, S* dy, const S* p) const {
    const int half = n * dim_space;
    const S eps2 = softening * softening;
    for (int i = 0; i < half * L; ++i) dy[i] = y[half * L + i];
    for (int i = 0; i < n; ++i) {
      S* acc = dy + (half + i * dim_space) * L;
      for (int d = 0; d < dim_space * L; ++d) acc[d] = S(0);
      for (int j = 0; j < n; ++j) {
        if (j == i) continue;
        for (int l = 0; l < L; ++l) {
          S r2 = eps2;
          for (int d = 0; d < dim_space; ++d) {
            const S dx = y[(j * dim_space + d) * L + l] - y[(i * dim_space + d) * L + l];
            r2 = math::fma(dx, dx, r2);
          }
          const S w = G * param<L, PerLane>(p, j, l) / (r2 * math::sqrt(r2));
          for (int d = 0; d < dim_space; ++d) {
            const S dx = y[(j * dim_space + d) * L + l] - y[(i * dim_space + d) * L + l];
            acc[d * L + l] = math::fma(w, dx, acc[d * L + l]);
          }
        }
      }
    }
  }
};

enum class Activation : int { Tanh = 0, Relu = 1, Softplus = 2, Sigmoid = 3, Identity = 4 };

template <Activation A, class S> ODEFAST_HD ODEFAST_INLINE S activate(S x) {
  if constexpr (A == Activation::Tanh) return math::tanh(x);
  else if constexpr (A == Activation::Relu) return x > S(0) ? x : S(0);
  else if constexpr (A == Activation::Softplus) return math::softplus(x);
  else if constexpr (A == Activation::Sigmoid) return math::sigmoid(x);
  else return x;
}

// Multi-layer perceptron f(t, y) = W_n act(... act(W_1 [y; t] + b_1) ...) + b_n.
// params = W1 (row-major, out x in), b1, W2, b2, ...; with time input, W1 has D + 1 columns and
// the last one multiplies t. Hidden activations use `act`; the output layer is affine.
//
// Kernels: with L > 1 lanes (one or more AVX-512 registers of trajectories), each weight is
// broadcast and multiplies a vector of lanes; with L == 1 (a lone trajectory) the output units
// are vectorised instead, using a transposed, zero-padded copy of the weights (`packed`), and
// narrow layers are dot products along the inputs (see below). All
// kernels form out_j = b_j + sum_k W_jk x_k with one fma per k in increasing k, except that a
// narrow layer (fewer than kSplitBelow units, e.g. the output layer 64 -> D) would be one long
// dependent fma chain per unit, so there every kernel splits the sum into kSplit interleaved
// partial sums: s_q = sum over k = q mod kSplit of W_jk x_k (fma chains in increasing k, s_0
// starting from b_j, the others from 0), added by halving folds (s_q += s_{q+h} for q < h,
// h = kSplit/2, ..., 1) into out_j = s_0. With kSplit = 8 a lone trajectory takes such a layer
// as dot products along k in registers of eight lanes, one fold per unit, and lane blocks keep
// two units' sixteen sums in registers. The kernels thus agree bit for bit.
template <class S> struct MLP {
  using scalar = S;
  static constexpr int kMaxLayers = 16;
  static constexpr int kUnitWidth = 64 / int(sizeof(S));  // units per AVX-512 register
  // Lane blocks of one register: the layer kernels keep the fma units busy with one, and a
  // smaller block wastes fewer evaluations on lanes that finished early (adaptive methods).
  static constexpr int kBlockRegisters = 1;
  int n_layers = 0;                       // number of affine maps
  int sizes[kMaxLayers + 1] = {};         // sizes[0] = D (+1 with time input), sizes[n] = D
  int w_offset[kMaxLayers] = {}, b_offset[kMaxLayers] = {};
  int max_width = 0;
  bool time_input = false;
  Activation act = Activation::Tanh;
  const S* packed = nullptr;              // shared weights, per layer: bias row, then one row per
                                          // input k holding W[:, k] (units padded to registers)
  int packed_offset[kMaxLayers] = {}, padded_out[kMaxLayers] = {};
  S* scratch = nullptr;                   // 2 * max_width * L values, owned by the caller
  // Optional, owned by the caller: where eval leaves the hidden layers' activations
  // (trace_size(L) values), so that a vjp at the same point skips its own forward pass.
  S* trace = nullptr;

  ODEFAST_HD int dim() const { return sizes[n_layers]; }
  ODEFAST_HD int n_params() const { return b_offset[n_layers - 1] + sizes[n_layers]; }

  // Host-side set-up from the layer sizes (including input and output).
  void configure(const std::vector<int>& layer_sizes, Activation a, bool with_time) {
    n_layers = int(layer_sizes.size()) - 1;
    time_input = with_time;
    act = a;
    int off = 0, poff = 0;
    max_width = 0;
    for (int i = 0; i <= n_layers; ++i) {
      sizes[i] = layer_sizes[i];
      max_width = sizes[i] > max_width ? sizes[i] : max_width;
    }
    for (int i = 0; i < n_layers; ++i) {
      w_offset[i] = off;
      off += sizes[i + 1] * sizes[i];
      b_offset[i] = off;
      off += sizes[i + 1];
      padded_out[i] = (sizes[i + 1] + kUnitWidth - 1) / kUnitWidth * kUnitWidth;
      packed_offset[i] = poff;
      poff += (sizes[i] + 1) * padded_out[i];  // bias row, then one row per input k
    }
  }
  std::size_t packed_size() const {
    return std::size_t(packed_offset[n_layers - 1]) + (sizes[n_layers - 1] + 1) * padded_out[n_layers - 1];
  }
  void pack(const S* p, S* out) const {
    for (int i = 0; i < n_layers; ++i) {
      S* dst = out + packed_offset[i];
      const int in = sizes[i], o = sizes[i + 1], po = padded_out[i];
      for (int j = 0; j < po; ++j) dst[j] = j < o ? p[b_offset[i] + j] : S(0);
      for (int k = 0; k < in; ++k)
        for (int j = 0; j < po; ++j) dst[(k + 1) * po + j] = j < o ? p[w_offset[i] + j * in + k] : S(0);
    }
  }
  std::size_t scratch_size(int L) const { return std::size_t(2) * max_width * L + 8 * kUnitWidth; }
  std::size_t trace_size(int L) const {
    std::size_t n = 0;
    for (int i = 0; i + 1 < n_layers; ++i) n += sizes[i + 1];
    return n * L;
  }

  static constexpr int kSplit = 8, kSplitBelow = 8;
  ODEFAST_HD bool split(int i) const { return sizes[i + 1] < kSplitBelow; }

  template <int L, bool PerLane>
  ODEFAST_HD void eval(const S* t, const S* y, S* dy, const S* p) const {
    switch (act) {
      case Activation::Tanh: return run<L, PerLane, Activation::Tanh>(t, y, dy, p);
      case Activation::Relu: return run<L, PerLane, Activation::Relu>(t, y, dy, p);
      case Activation::Softplus: return run<L, PerLane, Activation::Softplus>(t, y, dy, p);
      case Activation::Sigmoid: return run<L, PerLane, Activation::Sigmoid>(t, y, dy, p);
      default: return run<L, PerLane, Activation::Identity>(t, y, dy, p);
    }
  }

 private:
  template <int L, bool PerLane, Activation A>
  ODEFAST_HD void run(const S* t, const S* y, S* dy, const S* p) const {
    S* bufs[2] = {scratch, scratch + max_width * L};
    const int D = dim();
    const S* x = y;
    if (time_input) {  // the input vector is [y; t]
      for (int i = 0; i < D * L; ++i) bufs[1][i] = y[i];
      for (int l = 0; l < L; ++l) bufs[1][D * L + l] = t[l];
      x = bufs[1];
    }
    S* traced = trace;  // hidden layer i's activations: trace + sum_{j<i} sizes[j + 1] * L
    for (int i = 0; i < n_layers; ++i) {
      const bool last = i == n_layers - 1;
      S* out = last ? dy : (traced ? traced : bufs[i % 2]);
      if (last) layer<L, PerLane, Activation::Identity>(i, x, out, p);
      else layer<L, PerLane, A>(i, x, out, p);
      if (traced && !last) traced += sizes[i + 1] * L;
      x = out;
    }
  }

  template <int L, bool PerLane, Activation A>
  ODEFAST_HD void layer(int i, const S* x, S* out, const S* p) const {
#if ODEFAST_HAVE_AVX512
    if constexpr (simd::has_pack<S>) {  // real scalars; dual numbers take the plain loops
      if constexpr (L == 1 && !PerLane) {
        if (packed != nullptr) return split(i) ? dot_units<A>(i, x, out, p) : layer_units<A>(i, x, out);
      }
      if constexpr (L % kUnitWidth == 0) return layer_lanes<L, PerLane, A>(i, x, out, p);
    }
#endif
    layer_generic<L, PerLane, A>(i, x, out, p);
  }

  // Plain loops (no AVX-512, CUDA, lone trajectories with their own parameters); the
  // reference for the order of operations.
  template <int L, bool PerLane, Activation A>
  ODEFAST_HD void layer_generic(int i, const S* x, S* out, const S* p) const {
    const int in = sizes[i], n_out = sizes[i + 1];
    const S* W = p + (PerLane ? w_offset[i] * L : w_offset[i]);
    const S* bias = p + (PerLane ? b_offset[i] * L : b_offset[i]);
    const bool sp = split(i);
    for (int j = 0; j < n_out; ++j) {
      S acc[kSplit][L];
      for (int l = 0; l < L; ++l) {
        acc[0][l] = param<L, PerLane>(bias, j, l);
        for (int q = 1; q < kSplit; ++q) acc[q][l] = S(0);
      }
      for (int k = 0; k < in; ++k) {
        S* a = acc[sp ? k % kSplit : 0];
        for (int l = 0; l < L; ++l) a[l] = math::fma(param<L, PerLane>(W, j * in + k, l), x[k * L + l], a[l]);
      }
      if (sp)
        for (int h = kSplit / 2; h >= 1; h /= 2)
          for (int q = 0; q < h; ++q)
            for (int l = 0; l < L; ++l) acc[q][l] = acc[q][l] + acc[q + h][l];
      for (int l = 0; l < L; ++l) out[j * L + l] = activate<A>(acc[0][l]);
    }
  }

#if ODEFAST_HAVE_AVX512
  using V = simd::Pack<S>;
  using reg = typename V::reg;
  static_assert(V::width == kUnitWidth, "one register per unit group");

  // Lane blocks of NR registers: each weight (broadcast, or per-lane vectors) multiplies the NR
  // registers of input k; JB units at a time so that JB * NR accumulators hide the fma latency.
  // Weights come from the packed (k-major) copy when there is one, else from the parameters
  // (shared, row-major; or per lane).
  enum WeightSource { kPacked, kShared, kPerLane };

  template <int L, bool PerLane, Activation A>
  void layer_lanes(int i, const S* x, S* out, const S* p) const {
    if constexpr (PerLane) return lanes_from<L, kPerLane, A>(i, x, out, p);
    else if (packed) return lanes_from<L, kPacked, A>(i, x, out, p);
    else return lanes_from<L, kShared, A>(i, x, out, p);
  }

  template <int L, WeightSource Src, Activation A>
  void lanes_from(int i, const S* x, S* out, const S* p) const {
    constexpr int NR = L / kUnitWidth, JB = NR >= 4 ? 4 : 8;
    const int in = sizes[i], n_out = sizes[i + 1];
    constexpr bool per_lane = Src == kPerLane;
    const S* bias = p + (per_lane ? b_offset[i] * L : b_offset[i]);
    // weights of units j0 + jj at input k: w[jj * js] (shared) or vectors at w + jj * js (per lane)
    const S* W = Src == kPacked ? packed + packed_offset[i] + padded_out[i] : p + (per_lane ? w_offset[i] * L : w_offset[i]);
    const std::ptrdiff_t ks = Src == kPacked ? padded_out[i] : (per_lane ? L : 1);
    const std::ptrdiff_t js = Src == kPacked ? 1 : (per_lane ? std::ptrdiff_t(in) * L : in);
    const Weights<Src> w{W, ks, js};
    auto bias_reg = [&](int j, int r) { return per_lane ? V::load(bias + j * L + r * kUnitWidth) : V::broadcast(bias[j]); };
    if (split(i)) {  // narrow layer: kSplit partial sums per unit, two units at a time
      int j0 = 0;
      for (; j0 + 2 <= n_out; j0 += 2) split_lanes<L, A, 2>(j0, in, x, out, bias_reg, w);
      if (j0 < n_out) split_lanes<L, A, 1>(j0, in, x, out, bias_reg, w);
      activate_rest<A>(out, n_out * L);
      return;
    }
    int j0 = 0;
    for (; j0 + JB <= n_out; j0 += JB) unit_lanes<L, A, JB>(j0, in, x, out, bias_reg, w);
    for (; j0 < n_out; ++j0) unit_lanes<L, A, 1>(j0, in, x, out, bias_reg, w);
  }

  template <WeightSource Src> struct Weights {
    const S* base;
    std::ptrdiff_t ks, js;  // strides of input k and unit j
    const S* at(int j0, int k) const { return base + k * ks + j0 * js; }
    // weight of unit j0 + jj (register r of the lanes) given at(j0, k)
    ODEFAST_INLINE reg get(const S* wk, int jj, int r) const {
      if constexpr (Src == kPerLane) return V::load(wk + jj * js + r * kUnitWidth);
      else if constexpr (Src == kPacked) return V::broadcast(wk[jj]);
      else return V::broadcast(wk[jj * js]);
    }
  };

  template <int L, Activation A, int JS, class BiasReg, class Wt>
  ODEFAST_INLINE void split_lanes(int j0, int in, const S* x, S* out, BiasReg& bias_reg, const Wt& w) const {
    constexpr int NR = L / kUnitWidth;
    reg acc[JS][kSplit][NR];
    for (int jj = 0; jj < JS; ++jj)
      for (int r = 0; r < NR; ++r) {
        acc[jj][0][r] = bias_reg(j0 + jj, r);
        for (int q = 1; q < kSplit; ++q) acc[jj][q][r] = V::broadcast(S(0));
      }
    auto term = [&](int k, int q) {
      const S* wk = w.at(j0, k);
      for (int r = 0; r < NR; ++r) {
        const reg xk = V::load(x + k * L + r * kUnitWidth);
        for (int jj = 0; jj < JS; ++jj) acc[jj][q][r] = V::fma(w.get(wk, jj, r), xk, acc[jj][q][r]);
      }
    };
    int k = 0;
    for (; k + kSplit <= in; k += kSplit)
      for (int q = 0; q < kSplit; ++q) term(k + q, q);
    for (int q = 0; k < in; ++k, ++q) term(k, q);
    for (int jj = 0; jj < JS; ++jj)
      for (int r = 0; r < NR; ++r) {
        for (int h = kSplit / 2; h >= 1; h /= 2)
          for (int q = 0; q < h; ++q) acc[jj][q][r] = V::add(acc[jj][q][r], acc[jj][q + h][r]);
        V::store(out + (j0 + jj) * L + r * kUnitWidth, activate_reg<A>(acc[jj][0][r]));
      }
  }

  template <int L, Activation A, int JB, class BiasReg, class Wt>
  ODEFAST_INLINE void unit_lanes(int j0, int in, const S* x, S* out, BiasReg& bias_reg, const Wt& w) const {
    constexpr int NR = L / kUnitWidth;
    reg acc[JB][NR];
    for (int jj = 0; jj < JB; ++jj)
      for (int r = 0; r < NR; ++r) acc[jj][r] = bias_reg(j0 + jj, r);
    const S* xk = x;
    const S* wk = w.at(j0, 0);
    for (int k = 0; k < in; ++k, xk += L, wk += w.ks) {
      reg xr[NR];
      for (int r = 0; r < NR; ++r) xr[r] = V::load(xk + r * kUnitWidth);
      for (int jj = 0; jj < JB; ++jj) {
        if constexpr (std::is_same_v<Wt, Weights<kPerLane>>) {
          for (int r = 0; r < NR; ++r) acc[jj][r] = V::fma(w.get(wk, jj, r), xr[r], acc[jj][r]);
        } else {
          const reg wj = w.get(wk, jj, 0);
          for (int r = 0; r < NR; ++r) acc[jj][r] = V::fma(wj, xr[r], acc[jj][r]);
        }
      }
    }
    S* o = out + j0 * L;
    for (int jj = 0; jj < JB; ++jj)
      for (int r = 0; r < NR; ++r) V::store(o + jj * L + r * kUnitWidth, activate_reg<A>(acc[jj][r]));
    activate_rest<A>(o, JB * L);
  }

  // Lone trajectory: vectorise over output units using the packed (transposed) weights, in
  // groups of R registers (8 while enough units remain, then 4, 2, 1): R independent fma chains.
  template <Activation A>
  void layer_units(int i, const S* x, S* out) const {
    const int in = sizes[i], n_out = sizes[i + 1], po = padded_out[i];
    const S* P = packed + packed_offset[i];
    constexpr int W = kUnitWidth;
    int j0 = 0;
    for (; j0 + 8 * W <= po; j0 += 8 * W) unit_block<A, 8>(P, po, in, n_out, j0, x, out);
    for (; j0 + 4 * W <= po; j0 += 4 * W) unit_block<A, 4>(P, po, in, n_out, j0, x, out);
    for (; j0 + 2 * W <= po; j0 += 2 * W) unit_block<A, 2>(P, po, in, n_out, j0, x, out);
    for (; j0 < po; j0 += W) unit_block<A, 1>(P, po, in, n_out, j0, x, out);
  }

  template <Activation A, int R>
  ODEFAST_INLINE void unit_block(const S* P, int po, int in, int n_out, int j0, const S* x, S* out) const {
    constexpr int W = kUnitWidth;
    reg acc[R];
    for (int r = 0; r < R; ++r) acc[r] = V::load(P + j0 + r * W);
    for (int k = 0; k < in; ++k) {
      const reg xk = V::broadcast(x[k]);
      const S* row = P + (k + 1) * po + j0;
      for (int r = 0; r < R; ++r) acc[r] = V::fma(V::load(row + r * W), xk, acc[r]);
    }
    store_units<A, R>(acc, n_out, j0, out);
  }

  // Lone trajectory, narrow layer: each unit a dot product along the inputs in registers of
  // kSplit lanes (lane q accumulates the partial sum s_q), then folded in halves; the weights
  // are the layer's rows of the parameters (W_j. is contiguous).
  template <Activation A>
  ODEFAST_INLINE void dot_units(int i, const S* x, S* out, const S* p) const {
    using V8 = simd::Lanes8<S>;
    static_assert(kSplit == 8, "one lane per partial sum");
    const int in = sizes[i], n_out = sizes[i + 1], k_full = in / 8 * 8;
    const unsigned tail = (1u << (in - k_full)) - 1u;  // lanes of the last, partial register
    for (int j = 0; j < n_out; ++j) {
      const S* row = p + w_offset[i] + std::ptrdiff_t(j) * in;
      typename V8::reg acc = V8::first_lane(p[b_offset[i] + j]);
      for (int k = 0; k < k_full; k += 8) acc = V8::fma(V8::load(row + k), V8::load(x + k), acc);
      if (tail) acc = V8::fma_lanes(tail, V8::load_lanes(tail, row + k_full), V8::load_lanes(tail, x + k_full), acc);
      out[j] = activate<A>(V8::fold_sum(acc));
    }
  }

  // Stores R registers of units j0 .. j0 + R W (only those < n_out) and applies the activation.
  template <Activation A, int R>
  ODEFAST_INLINE void store_units(const reg* acc, int n_out, int j0, S* out) const {
    constexpr int W = kUnitWidth;
    if (j0 + R * W <= n_out) {
      for (int r = 0; r < R; ++r) V::store(out + j0 + r * W, activate_reg<A>(acc[r]));
      activate_rest<A>(out + j0, R * W);
    } else {
      S* tmp = scratch + 2 * max_width;  // R * W values past both layer buffers
      for (int r = 0; r < R; ++r) V::store(tmp + r * W, acc[r]);
      const int n = n_out - j0;
      for (int jj = 0; jj < n; ++jj) out[j0 + jj] = activate<A>(tmp[jj]);
    }
  }

  // Activations: tanh (the hot one) on whole registers (simd::tanh == math::tanh bit for bit);
  // the others afterwards in a plain loop the compiler vectorises (each element gets exactly
  // the scalar function's operations).
  template <Activation A> static reg activate_reg(reg v) {
    if constexpr (A == Activation::Tanh) return simd::tanh(v);
    else return v;
  }
  template <Activation A> static void activate_rest(S* __restrict v, int n) {
    if constexpr (A != Activation::Tanh && A != Activation::Identity) {
      ODEFAST_LANES
      for (int q = 0; q < n; ++q) v[q] = activate<A>(v[q]);
    }
  }
#endif
};

// The same dynamics on another scalar (dual numbers for second-order products): the
// configuration is copied; derived caches (the packed MLP weights) are not.
template <class T, class S> Lorenz<T> with_scalar(const Lorenz<S>&) { return {}; }
template <class T, class S> Linear<T> with_scalar(const Linear<S>& f) {
  Linear<T> g;
  g.D = f.D;
  return g;
}
template <class T, class S> NBody<T> with_scalar(const NBody<S>& f) {
  NBody<T> g;
  g.n = f.n;
  g.dim_space = f.dim_space;
  g.G = T(f.G);
  g.softening = T(f.softening);
  return g;
}
template <class T, class S> MLP<T> with_scalar(const MLP<S>& f) {
  MLP<T> g;
  g.configure(std::vector<int>(f.sizes, f.sizes + f.n_layers + 1), f.act, f.time_input);
  return g;
}

}  // namespace odefast
