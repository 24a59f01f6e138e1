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

static inline V vexp(V x) {
  // exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two parts)
  x = x > splat(kExpMax) ? splat(kExpMax) : x;
  x = x < splat(kExpMin) ? splat(kExpMin) : x;
  const V magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const V n = (x * kLog2e + magic) - magic;
  const V r = x - n * kLn2Hi - n * kLn2Lo;
  V p = splat(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = p * r + kExpPoly[i];
  p = p * (r * r) + r + 1.0f;
  const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  V scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

static inline V vsigmoid(V x) { return 1.0f / (1.0f + vexp(-x)); }

static inline V vtanh(V x) {
  // the rational approximation (kTanhNum, kTanhDen): no exponential, one division; relative error
  // below 3e-7 (kernel_tests.cc). The clamps keep a NaN (a comparison with it is false), and so
  // does the rest.
  const V hi = splat(kTanhClamp), lo = splat(-kTanhClamp);
  V c = hi < x ? hi : x;
  c = lo > c ? lo : c;
  const V z = c * c;
  V p = splat(kTanhNum[0]);
  for (int i = 1; i < 7; ++i) p = p * z + kTanhNum[i];
  V q = splat(kTanhDen[0]);
  for (int i = 1; i < 4; ++i) q = q * z + kTanhDen[i];
  const V r = c * (p / q);  // not (p * c) / q: p * c is subnormal near the smallest normal x
  const V a = x < splat(0.0f) ? -x : x;
  const V one = x < splat(0.0f) ? splat(-1.0f) : splat(1.0f);
  return a >= splat(kTanhOne) ? one : r;
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
template <V (*F)(V)>
void apply_array(const float* x, float* y, int n) {
  int i = 0;
  for (; i + W <= n; i += W) store(y + i, F(load(x + i)));
  if (i < n) {
    float in[W] = {}, out[W];
    for (int k = 0; i + k < n; ++k) in[k] = x[i + k];
    store(out, F(load(in)));
    for (int k = 0; i + k < n; ++k) y[i + k] = out[k];
  }
}

void sigmoid_array(const float* x, float* y, int n) { apply_array<vsigmoid>(x, y, n); }
void tanh_array(const float* x, float* y, int n) { apply_array<vtanh>(x, y, n); }

// ---------------------------------------------------------------------------
// Forward. b_ih / b_hh point at zeros when the layer has no bias.

// Two vectors in lockstep (where a block holds two or more): every operation on both halves, so
// the latency chains of the two (an exponential and a division per gate, then the cell's tanh)
// overlap instead of running one after the other. Lane by lane the same operations as on V.
struct V2 {
  V a, b;
};
static inline V2 operator+(V2 x, V2 y) { return {x.a + y.a, x.b + y.b}; }
static inline V2 operator*(V2 x, V2 y) { return {x.a * y.a, x.b * y.b}; }
struct VecMath2 {
  static inline V2 sigmoid(V2 x) { return {vsigmoid(x.a), vsigmoid(x.b)}; }
  static inline V2 tanh(V2 x) { return {vtanh(x.a), vtanh(x.b)}; }
};
static inline V2 load2(const float* p) { return {load(p), load(p + W)}; }
static inline void store2(float* p, V2 v) {
  store(p, v.a);
  store(p + W, v.b);
}

// The LSTM step of the units [p, p + width of T) of a block, on T = V or V2 (loaded and stored by
// Load and Store).
template <typename T, typename Math, T (*Load)(const float*), void (*Store)(float*, T)>
static inline void lstm_forward_lanes(const float* xp, const float* b_ih, const float* b_hh, int gs, const float* hp,
                                      float* c, float* h, float* y, float* gates, int p) {
  T pre[4];
  for (int q = 0; q < 4; ++q) pre[q] = Load(xp + q * gs + p) + Load(hp + q * 16 + p) + Load(b_ih + q * gs + p) + Load(b_hh + q * gs + p);
  T cn, hn;
  const LstmGatesOf<T> g = lstm_cell_forward<T, Math>(pre[0], pre[1], pre[2], pre[3], Load(c + p), &cn, &hn);
  Store(c + p, cn);
  Store(h + p, hn);
  Store(y + p, hn);
  Store(gates + p, g.i);
  Store(gates + gs + p, g.f);
  Store(gates + 2 * gs + p, g.g);
  Store(gates + 3 * gs + p, g.o);
}

void lstm_forward_block(const float* xp, const float* b_ih, const float* b_hh, int gs, const float* hp,
                        float* c, float* h, float* y, float* gates) {
  if (16 % (2 * W) == 0) {
    for (int p = 0; p < 16; p += 2 * W) lstm_forward_lanes<V2, VecMath2, load2, store2>(xp, b_ih, b_hh, gs, hp, c, h, y, gates, p);
  } else {
    for (int p = 0; p < 16; p += W) lstm_forward_lanes<V, VecMath, load, store>(xp, b_ih, b_hh, gs, hp, c, h, y, gates, p);
  }
}

void gru_forward_block(const float* xp, const float* b_ih, const float* b_hh, int gs, const float* hp,
                       const float* h_prev, float* h, float* y, float* gates, float* h_n) {
  for (int p = 0; p < 16; p += W) {
    const V hn = load(hp + 32 + p) + load(b_hh + 2 * gs + p);
    V hv;
    const GruGatesOf<V> g = gru_cell_forward<V, VecMath>(
        load(xp + p) + load(b_ih + p), load(xp + gs + p) + load(b_ih + gs + p), load(xp + 2 * gs + p) + load(b_ih + 2 * gs + p),
        load(hp + p) + load(b_hh + p), load(hp + 16 + p) + load(b_hh + gs + p), hn, load(h_prev + p), &hv);
    store(h + p, hv);
    store(y + p, hv);
    store(gates + p, g.r);
    store(gates + gs + p, g.z);
    store(gates + 2 * gs + p, g.n);
    store(h_n + p, hn);
  }
}

void rnn_forward_block(const float* xp, const float* b_ih, const float* b_hh, const float* hp, bool relu,
                       float* h, float* y, float* gates) {
  for (int p = 0; p < 16; p += W) {
    const V hv = rnn_cell_forward<V, VecMath>(load(xp + p) + load(hp + p) + load(b_ih + p) + load(b_hh + p), relu);
    store(h + p, hv);
    store(y + p, hv);
    store(gates + p, hv);
  }
}

// ---------------------------------------------------------------------------
// Backward. dh holds the gradient of the state leaving the step (dy already added);
// the kernels overwrite it with the part of dh_prev that bypasses the recurrent GEMM.

void lstm_backward_block(const float* gates, int gs, const float* c_prev, float* dh, float* dc, float* dgx) {
  for (int p = 0; p < 16; p += W) {
    const LstmGatesOf<V> g{load(gates + p), load(gates + gs + p), load(gates + 2 * gs + p), load(gates + 3 * gs + p)};
    V dc_prev;
    const LstmGatesOf<V> da = lstm_cell_backward<V, VecMath>(g, load(c_prev + p), load(dh + p), load(dc + p), &dc_prev);
    store(dc + p, dc_prev);
    store(dgx + p, da.i);
    store(dgx + gs + p, da.f);
    store(dgx + 2 * gs + p, da.g);
    store(dgx + 3 * gs + p, da.o);
    store(dh + p, splat(0.0f));
  }
}

void gru_backward_block(const float* gates, int gs, const float* h_n, const float* h_prev, float* dh, float* dgx, float* dgh) {
  for (int p = 0; p < 16; p += W) {
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

void rnn_backward_block(const float* h, bool relu, float* dh, float* dgx) {
  for (int p = 0; p < 16; p += W) {
    store(dgx + p, rnn_cell_backward<V, VecMath>(load(h + p), load(dh + p), relu));
    store(dh + p, splat(0.0f));
  }
}

}  // namespace RECURRENT_GATES_NS
