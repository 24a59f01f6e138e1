// CPU kernels for a recurrent layer over a whole sequence (see recurrent.h).
//
// The plan, per direction:
//   1. xproj (T*B, G*H) = x (T*B, I) * w_ih^T: one GEMM for all steps.
//   2. Each step: hproj (B, G*H) = h (B, H) * w_hh^T on w_hh packed once per call
//      (PackedMatrix: the GEMM's own panel layout, so steps skip packing B),
//      then one fused pass over the gates (cells.h) that writes h, c, y and saves
//      what backward needs into the reserve.
//   3. Backward: one reverse sweep producing the pre-activation gradients of every
//      step (dgates, (T*B, G*H)), then dx, dw_ih, dw_hh, db with one GEMM or one
//      reduction each over all steps.
// When lengths are sorted in decreasing order (as packed batches are) the active rows
// of a step are a prefix, and the recurrent GEMM runs over that prefix only.
#include "recurrent.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"

namespace recurrent {

namespace {

// Scratch reused across calls on the same thread: nothing is allocated per step,
// and after the first call of a given size nothing is allocated at all.
struct Scratch {
  PackedMatrix w_hh_packed;
  std::vector<float> xproj, hproj, h, c, reserve;
  std::vector<float> dgates_x, dgates_h, dh, dc, dh_partial, tmp;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

float* sized(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Per-direction views into the reserve.
struct Reserve {
  float* gates;   // (T, B, G*H) activated gates; RNN: the new state
  float* h_prev;  // (T, B, H) state entering step t
  float* c_prev;  // (T, B, H) LSTM cell entering step t
  float* h_n;     // (T, B, H) GRU: W_hn h + b_hn
};

size_t reserve_per_direction(const LayerDims& d) {
  const size_t rows = static_cast<size_t>(d.steps) * d.batch;
  const size_t extra = (d.cell == CellKind::kLstm || d.cell == CellKind::kGru) ? 1 : 0;
  return rows * d.hidden_size * (gate_count(d.cell) + 1 + extra);
}

Reserve reserve_views(const LayerDims& d, float* base, int direction) {
  const size_t rows = static_cast<size_t>(d.steps) * d.batch;
  const size_t gh = static_cast<size_t>(gate_count(d.cell)) * d.hidden_size;
  float* p = base + reserve_per_direction(d) * direction;
  Reserve r{};
  r.gates = p;
  p += rows * gh;
  r.h_prev = p;
  p += rows * d.hidden_size;
  if (d.cell == CellKind::kLstm) r.c_prev = p;
  if (d.cell == CellKind::kGru) r.h_n = p;
  return r;
}

// lengths sorted in non-increasing order?
bool sorted_decreasing(const int* lengths, int batch) {
  if (!lengths) return true;
  for (int b = 1; b < batch; ++b)
    if (lengths[b] > lengths[b - 1]) return false;
  return true;
}

// Rows the recurrent GEMM must cover at time t.
int gemm_rows(const int* lengths, int batch, bool sorted, int t) {
  if (!lengths || !sorted) return batch;
  int rows = 0;
  while (rows < batch && lengths[rows] > t) ++rows;
  return rows;
}

inline bool is_active(const int* lengths, int b, int t) { return !lengths || lengths[b] > t; }

inline int time_of(int direction, int step, int steps) {
  return direction == 0 ? step : steps - 1 - step;
}

inline float bias_at(const float* bias, int index) { return bias ? bias[index] : 0.0f; }

}  // namespace

size_t layer_reserve_size(const LayerDims& dims) {
  return reserve_per_direction(dims) * dims.directions;
}

// ===========================================================================
// Forward

void layer_forward_cpu(const LayerDims& dims, float* y, float* h_n, float* c_n, float* reserve,
                       const float* x, const int* lengths, const float* h0, const float* c0,
                       const LayerWeights* weights) {
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size;
  const int D = dims.directions, G = gate_count(dims.cell), GH = G * H;
  const CellKind cell = dims.cell;
  const bool relu = cell == CellKind::kRnnRelu;
  const bool sorted = sorted_decreasing(lengths, B);
  Scratch& s = scratch();
  if (!reserve) reserve = sized(s.reserve, layer_reserve_size(dims));

  float* xproj = sized(s.xproj, static_cast<size_t>(T) * B * GH);
  float* hproj = sized(s.hproj, static_cast<size_t>(B) * GH);
  float* h = sized(s.h, static_cast<size_t>(B) * H);
  float* c = sized(s.c, static_cast<size_t>(B) * H);

  for (int d = 0; d < D; ++d) {
    const LayerWeights& w = weights[d];
    const Reserve r = reserve_views(dims, reserve, d);

    gemm_cpu(false, true, T * B, GH, I, 1.0f, x, I, w.w_ih, I, 0.0f, xproj, GH);
    s.w_hh_packed.pack(true, H, GH, w.w_hh, H);  // w_hh^T (H, G*H), packed once for all steps

    const size_t state = static_cast<size_t>(B) * H;
    if (h0) std::memcpy(h, h0 + d * state, state * sizeof(float));
    else std::fill(h, h + state, 0.0f);
    if (cell == CellKind::kLstm) {
      if (c0) std::memcpy(c, c0 + d * state, state * sizeof(float));
      else std::fill(c, c + state, 0.0f);
    }

    for (int step = 0; step < T; ++step) {
      const int t = time_of(d, step, T);
      const int rows = gemm_rows(lengths, B, sorted, t);
      if (rows > 0) gemm_packed_cpu(rows, 1.0f, h, H, s.w_hh_packed, 0.0f, hproj, GH);

      for (int b = 0; b < B; ++b) {
        const size_t row = static_cast<size_t>(t) * B + b;
        float* hb = h + static_cast<size_t>(b) * H;
        float* yb = y + row * D * H + static_cast<size_t>(d) * H;
        float* gates = r.gates + row * GH;
        std::memcpy(r.h_prev + row * H, hb, H * sizeof(float));
        if (cell == CellKind::kLstm)
          std::memcpy(r.c_prev + row * H, c + static_cast<size_t>(b) * H, H * sizeof(float));
        if (!is_active(lengths, b, t)) {
          std::fill(yb, yb + H, 0.0f);
          std::fill(gates, gates + GH, 0.0f);
          if (cell == CellKind::kGru) std::fill(r.h_n + row * H, r.h_n + (row + 1) * H, 0.0f);
          continue;
        }
        const float* xp = xproj + row * GH;
        const float* hp = hproj + static_cast<size_t>(b) * GH;
        if (cell == CellKind::kLstm) {
          float* cb = c + static_cast<size_t>(b) * H;
          for (int j = 0; j < H; ++j) {
            float pre[4];
            for (int q = 0; q < 4; ++q) {
              const int idx = q * H + j;
              pre[q] = xp[idx] + hp[idx] + bias_at(w.b_ih, idx) + bias_at(w.b_hh, idx);
            }
            const LstmGates gv = lstm_cell_forward(pre[0], pre[1], pre[2], pre[3], cb[j], &cb[j], &hb[j]);
            gates[j] = gv.i;
            gates[H + j] = gv.f;
            gates[2 * H + j] = gv.g;
            gates[3 * H + j] = gv.o;
            yb[j] = hb[j];
          }
        } else if (cell == CellKind::kGru) {
          float* hn_saved = r.h_n + row * H;
          for (int j = 0; j < H; ++j) {
            const float x_r = xp[j] + bias_at(w.b_ih, j);
            const float x_z = xp[H + j] + bias_at(w.b_ih, H + j);
            const float x_n = xp[2 * H + j] + bias_at(w.b_ih, 2 * H + j);
            const float h_r = hp[j] + bias_at(w.b_hh, j);
            const float h_z = hp[H + j] + bias_at(w.b_hh, H + j);
            const float h_n_pre = hp[2 * H + j] + bias_at(w.b_hh, 2 * H + j);
            const GruGates gv = gru_cell_forward(x_r, x_z, x_n, h_r, h_z, h_n_pre, hb[j], &hb[j]);
            gates[j] = gv.r;
            gates[H + j] = gv.z;
            gates[2 * H + j] = gv.n;
            hn_saved[j] = h_n_pre;
            yb[j] = hb[j];
          }
        } else {
          for (int j = 0; j < H; ++j) {
            const float pre = xp[j] + hp[j] + bias_at(w.b_ih, j) + bias_at(w.b_hh, j);
            hb[j] = rnn_cell_forward(pre, relu);
            gates[j] = hb[j];
            yb[j] = hb[j];
          }
        }
      }
    }
    std::memcpy(h_n + d * state, h, state * sizeof(float));
    if (cell == CellKind::kLstm) std::memcpy(c_n + d * state, c, state * sizeof(float));
  }
}

// ===========================================================================
// Backward

void layer_backward_cpu(const LayerDims& dims, float* dx, float* dh0, float* dc0,
                        const LayerGrads* grads, const float* dy, const float* dh_n,
                        const float* dc_n, const float* reserve, const float* x,
                        const int* lengths, const LayerWeights* weights) {
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size;
  const int D = dims.directions, G = gate_count(dims.cell), GH = G * H;
  const CellKind cell = dims.cell;
  const bool relu = cell == CellKind::kRnnRelu;
  const bool sorted = sorted_decreasing(lengths, B);
  const size_t rows_all = static_cast<size_t>(T) * B;
  const size_t state = static_cast<size_t>(B) * H;
  Scratch& s = scratch();

  float* dgx = sized(s.dgates_x, rows_all * GH);
  // Only the GRU has different input-side and hidden-side gate gradients.
  float* dgh = cell == CellKind::kGru ? sized(s.dgates_h, rows_all * GH) : dgx;
  float* dh = sized(s.dh, state);
  float* dc = sized(s.dc, state);
  float* partial = sized(s.dh_partial, state);
  float* tmp = sized(s.tmp, state);

  for (int d = 0; d < D; ++d) {
    const LayerWeights& w = weights[d];
    const LayerGrads& g = grads[d];
    const Reserve r = reserve_views(dims, const_cast<float*>(reserve), d);
    s.w_hh_packed.pack(false, GH, H, w.w_hh, H);  // w_hh (G*H, H), packed once for all steps

    if (dh_n) std::memcpy(dh, dh_n + d * state, state * sizeof(float));
    else std::fill(dh, dh + state, 0.0f);
    if (cell == CellKind::kLstm) {
      if (dc_n) std::memcpy(dc, dc_n + d * state, state * sizeof(float));
      else std::fill(dc, dc + state, 0.0f);
    }

    for (int step = T - 1; step >= 0; --step) {
      const int t = time_of(d, step, T);
      for (int b = 0; b < B; ++b) {
        const size_t row = static_cast<size_t>(t) * B + b;
        float* gx = dgx + row * GH;
        float* gh = dgh + row * GH;
        if (!is_active(lengths, b, t)) {
          std::fill(gx, gx + GH, 0.0f);
          if (gh != gx) std::fill(gh, gh + GH, 0.0f);
          continue;
        }
        const float* gates = r.gates + row * GH;
        const float* dyb = dy ? dy + row * D * H + static_cast<size_t>(d) * H : nullptr;
        float* dhb = dh + static_cast<size_t>(b) * H;
        float* pb = partial + static_cast<size_t>(b) * H;
        if (cell == CellKind::kLstm) {
          float* dcb = dc + static_cast<size_t>(b) * H;
          const float* cp = r.c_prev + row * H;
          for (int j = 0; j < H; ++j) {
            const float dht = dhb[j] + (dyb ? dyb[j] : 0.0f);
            const LstmGates gv{gates[j], gates[H + j], gates[2 * H + j], gates[3 * H + j]};
            const LstmGates da = lstm_cell_backward(gv, cp[j], dht, dcb[j], &dcb[j]);
            gx[j] = da.i;
            gx[H + j] = da.f;
            gx[2 * H + j] = da.g;
            gx[3 * H + j] = da.o;
            pb[j] = 0.0f;
          }
        } else if (cell == CellKind::kGru) {
          const float* hp = r.h_prev + row * H;
          const float* hn = r.h_n + row * H;
          for (int j = 0; j < H; ++j) {
            const float dht = dhb[j] + (dyb ? dyb[j] : 0.0f);
            const GruGates gv{gates[j], gates[H + j], gates[2 * H + j]};
            const GruGrads da = gru_cell_backward(gv, hn[j], hp[j], dht, &pb[j]);
            gx[j] = gh[j] = da.r;
            gx[H + j] = gh[H + j] = da.z;
            gx[2 * H + j] = da.n_x;
            gh[2 * H + j] = da.n_h;
          }
        } else {
          for (int j = 0; j < H; ++j) {
            const float dht = dhb[j] + (dyb ? dyb[j] : 0.0f);
            gx[j] = rnn_cell_backward(gates[j], dht, relu);
            pb[j] = 0.0f;
          }
        }
      }
      const int rows = gemm_rows(lengths, B, sorted, t);
      if (rows > 0) gemm_packed_cpu(rows, 1.0f, dgh + static_cast<size_t>(t) * B * GH, GH, s.w_hh_packed, 0.0f, tmp, H);
      for (int b = 0; b < B; ++b) {
        if (!is_active(lengths, b, t)) continue;
        float* dhb = dh + static_cast<size_t>(b) * H;
        const float* tb = tmp + static_cast<size_t>(b) * H;
        const float* pb = partial + static_cast<size_t>(b) * H;
        for (int j = 0; j < H; ++j) dhb[j] = tb[j] + pb[j];
      }
    }
    if (dh0) std::memcpy(dh0 + d * state, dh, state * sizeof(float));
    if (dc0 && cell == CellKind::kLstm) std::memcpy(dc0 + d * state, dc, state * sizeof(float));

    const int n = T * B;
    gemm_cpu(false, false, n, I, GH, 1.0f, dgx, GH, w.w_ih, I, d == 0 ? 0.0f : 1.0f, dx, I);
    gemm_cpu(true, false, GH, I, n, 1.0f, dgx, GH, x, I, 0.0f, g.w_ih, I);
    gemm_cpu(true, false, GH, H, n, 1.0f, dgh, GH, r.h_prev, H, 0.0f, g.w_hh, H);
    if (g.b_ih) {
      std::fill(g.b_ih, g.b_ih + GH, 0.0f);
      std::fill(g.b_hh, g.b_hh + GH, 0.0f);
      for (int i = 0; i < n; ++i) {
        const float* gx = dgx + static_cast<size_t>(i) * GH;
        const float* gh = dgh + static_cast<size_t>(i) * GH;
        for (int k = 0; k < GH; ++k) {
          g.b_ih[k] += gx[k];
          g.b_hh[k] += gh[k];
        }
      }
    }
  }
}

}  // namespace recurrent
