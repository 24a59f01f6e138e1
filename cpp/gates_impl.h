// Vectorized activations and fused gate kernels, compiled once per instruction set by
// gates.cc, which defines before including this file:
//   RECURRENT_GATES_NS     the namespace of this variant (avx512, avx2, baseline)
//   RECURRENT_GATES_BYTES  the vector size in bytes (64, 32 or 16)
//   RECURRENT_GATES_NEON   (AArch64 only) the math in NEON intrinsics instead of GCC's generic vectors
// No library functions are called in here (they would not be compiled for the target).
//
// The gate equations are cells.h's, instantiated on the vector type V with VecMath; only
// sigmoid and tanh differ from the scalar ones in the last bits: expf is Cephes' range
// reduction with a degree-5 polynomial (< 2 ulp), sigmoid is 1 / (1 + exp(-x)), and tanh is a
// rational approximation (degree 13 over 6, one division, no exponential), so the relative error
// stays below 1e-6 everywhere (tested in kernel_tests.cc).
//
// Block kernels work on one batch row and one block of 16 hidden units. Pointers are at
// the block's first unit; gate q of the x-side pre-activations, of the biases and of the
// saved gates is at q * gs (gs = H in the real arrays, 16 in padded scratch); gate q of
// the recurrent projection hp is at q * 16 (the permuted layout of the forward GEMM).

namespace RECURRENT_GATES_NS {

// The constants both versions below evaluate (polynomials highest degree first, for Horner's rule).
// exp: Cephes' range reduction and degree-5 polynomial
constexpr float kExpMax = 88.3762626647949f, kExpMin = -87.3365478515625f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;  // ln 2 = kLn2Hi + kLn2Lo
constexpr float kExpPoly[] = {1.9875691500E-4f, 1.3981999507E-3f, 8.3334519073E-3f, 4.1665795894E-2f, 1.6666665459E-1f, 5.0000001201E-1f};
// tanh: a rational approximation, odd degree 13 over even degree 6 (Eigen's fast tanh), in z = x^2:
// x * num(z) / den(z) on x clamped to +-kTanhClamp, where the quotient levels off at 0.99999976;
// from |x| = kTanhOne, where tanh rounds to 1 in float, the result is +-1
constexpr float kTanhClamp = 7.90531110763549805f, kTanhOne = 9.0f;
constexpr float kTanhNum[] = {-2.76076847742355e-16f, 2.00018790482477e-13f, -8.60467152213735e-11f, 5.12229709037114e-08f,
                              1.48572235717979e-05f, 6.37261928875436e-04f, 4.89352455891786e-03f};
constexpr float kTanhDen[] = {1.19825839466702e-06f, 1.18534705686654e-04f, 2.26843463243900e-03f, 4.89352518554385e-03f};

#ifdef RECURRENT_GATES_NEON
// AArch64 ASIMD: the same algorithms in NEON intrinsics (arm_neon.h, included by gates.cc), with
// fused multiply-adds, FRINTN for the rounding and bit selects. float32x4_t takes C++'s vector
// operators in GCC and Clang, so cells.h's equations instantiate on it as they are.
typedef float32x4_t V;
typedef int32x4_t VI;
constexpr int W = 4;

static inline V load(const float* p) { return vld1q_f32(p); }
static inline void store(float* p, V v) { vst1q_f32(p, v); }
static inline V splat(float x) { return vdupq_n_f32(x); }
static inline V fma(V acc, V a, V b) { return vfmaq_f32(acc, a, b); }  // acc + a * b

static inline V vexp(V x) {
  // exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two parts).
  // FMAX/FMIN return NaN for a NaN input, as the comparisons of the generic version do.
  x = vminq_f32(vmaxq_f32(x, splat(kExpMin)), splat(kExpMax));
  const V n = vrndnq_f32(vmulq_n_f32(x, kLog2e));  // to nearest, ties to even
  const V r = fma(vfmsq_f32(x, n, splat(kLn2Hi)), n, splat(-kLn2Lo));
  V p = splat(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = fma(splat(kExpPoly[i]), p, r);
  p = fma(vaddq_f32(r, splat(1.0f)), p, vmulq_f32(r, r));
  const VI bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(bits));
}

static inline V vsigmoid(V x) { return vdivq_f32(splat(1.0f), vaddq_f32(splat(1.0f), vexp(vnegq_f32(x)))); }

static inline V vtanh(V x) {
  // the generic version's rational approximation (see there); FMIN/FMAX keep a NaN
  const V c = vmaxq_f32(vminq_f32(x, splat(kTanhClamp)), splat(-kTanhClamp));
  const V z = vmulq_f32(c, c);
  V p = splat(kTanhNum[0]);
  for (int i = 1; i < 7; ++i) p = fma(splat(kTanhNum[i]), p, z);
  V q = splat(kTanhDen[0]);
  for (int i = 1; i < 4; ++i) q = fma(splat(kTanhDen[i]), q, z);
  const V r = vmulq_f32(c, vdivq_f32(p, q));
  // +-1 from kTanhOne, the sign copied from x
  const V one = vbslq_f32(vdupq_n_u32(0x80000000u), x, splat(1.0f));
  return vbslq_f32(vcgeq_f32(vabsq_f32(x), splat(kTanhOne)), one, r);
}

// (NEON) the activations of N vectors, one after another
template <int N>
static inline void vsigmoid_n(V* x) {
  for (int k = 0; k < N; ++k) x[k] = vsigmoid(x[k]);
}
template <int N>
static inline void vtanh_n(V* x) {
  for (int k = 0; k < N; ++k) x[k] = vtanh(x[k]);
}

// cells.h's activations on float32x4_t
struct VecMath {
  static inline V sigmoid(V x) { return vsigmoid(x); }
  static inline V tanh(V x) { return vtanh(x); }
  static inline V relu(V x) { return vbslq_f32(vcgtq_f32(x, splat(0.0f)), x, splat(0.0f)); }
  static inline V relu_grad(V h, V dh) { return vbslq_f32(vcgtq_f32(h, splat(0.0f)), dh, splat(0.0f)); }
};

#else
typedef float V __attribute__((vector_size(RECURRENT_GATES_BYTES)));                           // W floats
typedef float VU __attribute__((vector_size(RECURRENT_GATES_BYTES), aligned(4), may_alias));  // V in memory
typedef int VI __attribute__((vector_size(RECURRENT_GATES_BYTES)));                            // W int32
constexpr int W = RECURRENT_GATES_BYTES / 4;  // the vector width in floats

static inline V load(const float* p) { return *reinterpret_cast<const VU*>(p); }
static inline void store(float* p, V v) { *reinterpret_cast<VU*>(p) = v; }
static inline V splat(float x) { return V{} + x; }

// bound < x ? bound : x and bound > x ? bound : x, the clamps below. On x86 one MINPS / MAXPS
// each (which return their second operand where either is NaN, as the comparisons do), instead
// of a compare and a blend.
#if defined(__x86_64__) && RECURRENT_GATES_BYTES == 64
// (the masked builtins: _mm512_min_ps passes an undefined operand, which GCC 12 warns about)
static inline V vmin_keep(V bound, V x) { return __builtin_ia32_minps512_mask(bound, x, x, 0xffff, _MM_FROUND_CUR_DIRECTION); }
static inline V vmax_keep(V bound, V x) { return __builtin_ia32_maxps512_mask(bound, x, x, 0xffff, _MM_FROUND_CUR_DIRECTION); }
#elif defined(__x86_64__) && RECURRENT_GATES_BYTES == 32
static inline V vmin_keep(V bound, V x) { return _mm256_min_ps(bound, x); }
static inline V vmax_keep(V bound, V x) { return _mm256_max_ps(bound, x); }
#elif defined(__x86_64__)
static inline V vmin_keep(V bound, V x) { return _mm_min_ps(bound, x); }
static inline V vmax_keep(V bound, V x) { return _mm_max_ps(bound, x); }
#else
static inline V vmin_keep(V bound, V x) { return bound < x ? bound : x; }
static inline V vmax_keep(V bound, V x) { return bound > x ? bound : x; }
#endif

// The activations on N vectors at once, in lockstep: each operation on all N before the next.
// One vector's exponential or tanh is a chain of some 20 dependent operations; issued one
// vector after another, the chains filled the core's scheduler and left its pipes idle (Zen 2:
// 8 dependent FMAs a vector ran 6x slower than 4). Lane by lane, the same operations for any N.
#define RECURRENT_LOCKSTEP _Pragma("GCC unroll 16") for (int k = 0; k < N; ++k)

template <int N>
static inline void vexp_n(V* x) {
  // exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two parts)
  V n[N], r[N], p[N];
  const V magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  RECURRENT_LOCKSTEP x[k] = vmax_keep(splat(kExpMin), vmin_keep(splat(kExpMax), x[k]));
  RECURRENT_LOCKSTEP n[k] = (x[k] * kLog2e + magic) - magic;
  RECURRENT_LOCKSTEP r[k] = x[k] - n[k] * kLn2Hi - n[k] * kLn2Lo;
  RECURRENT_LOCKSTEP p[k] = splat(kExpPoly[0]);
  _Pragma("GCC unroll 8") for (int i = 1; i < 6; ++i) RECURRENT_LOCKSTEP p[k] = p[k] * r[k] + kExpPoly[i];
  RECURRENT_LOCKSTEP {
    p[k] = p[k] * (r[k] * r[k]) + r[k] + 1.0f;
    const VI bits = (__builtin_convertvector(n[k], VI) + 127) << 23;
    V scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    x[k] = p[k] * scale;
  }
}

template <int N>
static inline void vsigmoid_n(V* x) {
  RECURRENT_LOCKSTEP x[k] = -x[k];
  vexp_n<N>(x);
  RECURRENT_LOCKSTEP x[k] = 1.0f / (1.0f + x[k]);
}

template <int N>
static inline void vtanh_n(V* x) {
  // the rational approximation (kTanhNum, kTanhDen): no exponential, one division; relative error
  // below 3e-7 (kernel_tests.cc). The clamps keep a NaN, and so does the rest.
  V c[N], z[N], p[N], q[N];
  RECURRENT_LOCKSTEP c[k] = vmax_keep(splat(-kTanhClamp), vmin_keep(splat(kTanhClamp), x[k]));
  RECURRENT_LOCKSTEP z[k] = c[k] * c[k];
  RECURRENT_LOCKSTEP p[k] = splat(kTanhNum[0]);
  RECURRENT_LOCKSTEP q[k] = splat(kTanhDen[0]);
  _Pragma("GCC unroll 8") for (int i = 1; i < 7; ++i) RECURRENT_LOCKSTEP {
    p[k] = p[k] * z[k] + kTanhNum[i];
    if (i < 4) q[k] = q[k] * z[k] + kTanhDen[i];
  }
  RECURRENT_LOCKSTEP {
    const V r = c[k] * (p[k] / q[k]);  // not (p * c) / q: p * c is subnormal near the smallest normal x
    // from |x| = kTanhOne, +-1 with x's sign
    const V a = x[k] < splat(0.0f) ? -x[k] : x[k];
    const V one = x[k] < splat(0.0f) ? splat(-1.0f) : splat(1.0f);
    x[k] = a >= splat(kTanhOne) ? one : r;
  }
}

static inline V vsigmoid(V x) {
  vsigmoid_n<1>(&x);
  return x;
}
static inline V vtanh(V x) {
  vtanh_n<1>(&x);
  return x;
}

// cells.h's activations on V
struct VecMath {
  static inline V sigmoid(V x) { return vsigmoid(x); }
  static inline V tanh(V x) { return vtanh(x); }
  static inline V relu(V x) { return x > splat(0.0f) ? x : splat(0.0f); }
  static inline V relu_grad(V h, V dh) { return h > splat(0.0f) ? dh : splat(0.0f); }
};

#endif  // RECURRENT_GATES_NEON

// y[i] = f(x[i]) over whole vectors, the tail through a zero-padded one.
template <V (*F)(V), void (*FN)(V*)>
void apply_array(const float* x, float* y, int n) {
  int i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    V v[4] = {load(x + i), load(x + i + W), load(x + i + 2 * W), load(x + i + 3 * W)};
    FN(v);
    for (int k = 0; k < 4; ++k) store(y + i + k * W, v[k]);
  }
  for (; i + W <= n; i += W) store(y + i, F(load(x + i)));
  if (i < n) {
    float in[W] = {}, out[W];
    for (int k = 0; i + k < n; ++k) in[k] = x[i + k];
    store(out, F(load(in)));
    for (int k = 0; i + k < n; ++k) y[i + k] = out[k];
  }
}

void sigmoid_array(const float* x, float* y, int n) { apply_array<vsigmoid, vsigmoid_n<4>>(x, y, n); }
void tanh_array(const float* x, float* y, int n) { apply_array<vtanh, vtanh_n<4>>(x, y, n); }

// ---------------------------------------------------------------------------

// Forward. b_ih / b_hh point at zeros when the layer has no bias.
//
// A block's gates are activated in lockstep: all of a block's sigmoids at once, then its tanh
// (vsigmoid_n, vtanh_n), each a few vectors of one gate (kUnitVectors, 16 units). The rest of
// cells.h's equations then run vector by vector on the activated gates, as before.
constexpr int kUnitVectors = 16 / W;

// The LSTM step of `blocks` whole blocks of one row: block k's units at +16 k in xp, the biases,
// c, h, y and gates, its recurrent projection at hp + 64 k. In two passes over the blocks: first
// cells.h's gate activations, the sigmoids of i, f and o in one lockstep (three gates' chains
// at once: 10% faster than gate by gate on Zen 2), stored in gates; then, from the stored gates,
// the cell update (lstm_cell_state, then h'), a block's tanh(c') in lockstep. (The passes are short and independent from
// block to block, so the core overlaps blocks: 20% faster than both parts block by block.)
void lstm_forward_block(const float* xp, const float* b_ih, const float* b_hh, int gs, const float* hp,
                        float* c, float* h, float* y, float* gates, int blocks) {
  constexpr int NV = kUnitVectors;
  for (int blk = 0; blk < blocks; ++blk) {
    const int u = blk * 16;
    const float* hb = hp + blk * 64;
    const auto pre = [&](int q, int v) {
      const int p = u + v * W;
      return load(xp + q * gs + p) + load(hb + q * 16 + v * W) + load(b_ih + q * gs + p) + load(b_hh + q * gs + p);
    };
    V s[3 * NV], g[NV];  // the pre-activations of i, f and o; of g
    for (int v = 0; v < NV; ++v) {
      s[v] = pre(0, v);
      s[NV + v] = pre(1, v);
      s[2 * NV + v] = pre(3, v);
      g[v] = pre(2, v);
    }
    vsigmoid_n<3 * NV>(s);
    vtanh_n<NV>(g);
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W;
      store(gates + p, s[v]);
      store(gates + gs + p, s[NV + v]);
      store(gates + 2 * gs + p, g[v]);
      store(gates + 3 * gs + p, s[2 * NV + v]);
    }
  }
  for (int u = 0; u < blocks * 16; u += 16) {
    V cn[NV], tc[NV];
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W;
      const LstmGatesOf<V> act{load(gates + p), load(gates + gs + p), load(gates + 2 * gs + p), load(gates + 3 * gs + p)};
      cn[v] = tc[v] = lstm_cell_state(act, load(c + p));
    }
    vtanh_n<NV>(tc);
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W;
      const V hn = load(gates + 3 * gs + p) * tc[v];  // lstm_cell_forward's h' = o tanh(c')
      store(c + p, cn[v]);
      store(h + p, hn);
      store(y + p, hn);
    }
  }
}

// cells.h's gru_cell_forward for `blocks` whole blocks of one row (block k's units at +16 k, its
// recurrent projection at hp + 48 k): per block r and z in one lockstep, then n. (One call per row
// instead of one per block: the call's arguments cost as much as a block's arithmetic at H = 128.)
void gru_forward_block(const float* xp, const float* b_ih, const float* b_hh, int gs, const float* hp,
                       const float* h_prev, float* h, float* y, float* gates, float* h_n, int blocks) {
  constexpr int NV = kUnitVectors;
  for (int blk = 0; blk < blocks; ++blk) {
    const int u = blk * 16;
    const float* hb = hp + blk * 48;
    V rz[2 * NV], n[NV], hn[NV];
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W, q = v * W;
      rz[v] = (load(xp + p) + load(b_ih + p)) + (load(hb + q) + load(b_hh + p));
      rz[NV + v] = (load(xp + gs + p) + load(b_ih + gs + p)) + (load(hb + 16 + q) + load(b_hh + gs + p));
    }
    vsigmoid_n<2 * NV>(rz);
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W, q = v * W;
      hn[v] = load(hb + 32 + q) + load(b_hh + 2 * gs + p);
      n[v] = (load(xp + 2 * gs + p) + load(b_ih + 2 * gs + p)) + rz[v] * hn[v];
    }
    vtanh_n<NV>(n);
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W;
      const GruGatesOf<V> g{rz[v], rz[NV + v], n[v]};
      const V hv = gru_cell_state(g, load(h_prev + p));
      store(h + p, hv);
      store(y + p, hv);
      store(gates + p, g.r);
      store(gates + gs + p, g.z);
      store(gates + 2 * gs + p, g.n);
      store(h_n + p, hn[v]);
    }
  }
}

// `blocks` whole blocks of one row; the recurrent projection's units lie side by side (one gate)
void rnn_forward_block(const float* xp, const float* b_ih, const float* b_hh, const float* hp, bool relu,
                       float* h, float* y, float* gates, int blocks) {
  constexpr int NV = kUnitVectors;
  for (int u = 0; u < blocks * 16; u += 16) {
    V a[NV];
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W;
      a[v] = load(xp + p) + load(hp + p) + load(b_ih + p) + load(b_hh + p);
    }
    if (relu) {
      for (int v = 0; v < NV; ++v) a[v] = rnn_cell_forward<V, VecMath>(a[v], true);
    } else {
      vtanh_n<NV>(a);  // rnn_cell_forward's tanh
    }
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W;
      store(h + p, a[v]);
      store(y + p, a[v]);
      store(gates + p, a[v]);
    }
  }
}

// ---------------------------------------------------------------------------
// Backward. dh holds the gradient of the state leaving the step (dy already added);
// the kernels overwrite it with the part of dh_prev that bypasses the recurrent GEMM.

// cells.h's lstm_cell_backward over `blocks` whole blocks of one row (units side by side), each
// block's tanh(c') in lockstep
void lstm_backward_block(const float* gates, int gs, const float* c_prev, float* dh, float* dc, float* dgx, int blocks) {
  constexpr int NV = kUnitVectors;
  for (int u = 0; u < blocks * 16; u += 16) {
    LstmGatesOf<V> g[NV];
    V tc[NV];
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W;
      g[v] = {load(gates + p), load(gates + gs + p), load(gates + 2 * gs + p), load(gates + 3 * gs + p)};
      tc[v] = lstm_cell_state(g[v], load(c_prev + p));
    }
    vtanh_n<NV>(tc);
    for (int v = 0; v < NV; ++v) {
      const int p = u + v * W;
      V dc_prev;
      const LstmGatesOf<V> da = lstm_cell_backward_given(g[v], load(c_prev + p), tc[v], load(dh + p), load(dc + p), &dc_prev);
      store(dc + p, dc_prev);
      store(dgx + p, da.i);
      store(dgx + gs + p, da.f);
      store(dgx + 2 * gs + p, da.g);
      store(dgx + 3 * gs + p, da.o);
      store(dh + p, splat(0.0f));
    }
  }
}

void gru_backward_block(const float* gates, int gs, const float* h_n, const float* h_prev, float* dh, float* dgx, float* dgh,
                        int blocks) {
  for (int p = 0; p < blocks * 16; p += W) {
    const GruGatesOf<V> g{load(gates + p), load(gates + gs + p), load(gates + 2 * gs + p)};
    V direct;
    const GruGradsOf<V> da = gru_cell_backward<V>(g, load(h_n + p), load(h_prev + p), load(dh + p), &direct);
    store(dgx + p, da.r);
    store(dgh + p, da.r);
    store(dgx + gs + p, da.z);
    store(dgh + gs + p, da.z);
    store(dgx + 2 * gs + p, da.n_x);
    store(dgh + 2 * gs + p, da.n_h);
    store(dh + p, direct);
  }
}

void rnn_backward_block(const float* h, bool relu, float* dh, float* dgx, int blocks) {
  for (int p = 0; p < blocks * 16; p += W) {
    store(dgx + p, rnn_cell_backward<V, VecMath>(load(h + p), load(dh + p), relu));
    store(dh + p, splat(0.0f));
  }
}

}  // namespace RECURRENT_GATES_NS
