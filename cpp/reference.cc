// Double-precision reference of a recurrent layer (see reference.h).
#include "reference.h"

#include <cmath>
#include <vector>

namespace recurrent {

namespace {

double sig(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// Everything one step of one direction computed, kept for backward.
struct StepRecord {
  std::vector<double> h_prev, c_prev;  // (H)
  std::vector<double> gates;           // activated gates (G*H); RNN: new h
  std::vector<double> hn;              // GRU: W_hn h + b_hn (H)
  std::vector<double> c;               // LSTM: new cell (H)
  bool active = false;
};

// W (rows, cols) times v (cols), plus bias.
double dot_row(const double* w, int row, int cols, const double* v) {
  double acc = 0.0;
  for (int k = 0; k < cols; ++k) acc += w[static_cast<long>(row) * cols + k] * v[k];
  return acc;
}

// Runs one direction for one batch row, recording every step in time order.
void run_row(const LayerDims& dims, int d, int b, const double* x, const int* lengths,
             const double* h0, const double* c0, const ReferenceWeights& w,
             std::vector<StepRecord>& steps, std::vector<double>& h, std::vector<double>& c) {
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size;
  const int G = gate_count(dims.cell);
  const int len = lengths ? lengths[b] : T;
  h.assign(H, 0.0);
  c.assign(H, 0.0);
  for (int j = 0; j < H; ++j) {
    if (h0) h[j] = h0[(static_cast<long>(d) * B + b) * H + j];
    if (c0 && dims.cell == CellKind::kLstm) c[j] = c0[(static_cast<long>(d) * B + b) * H + j];
  }
  steps.assign(T, StepRecord());
  for (int s = 0; s < len; ++s) {
    const int t = d == 0 ? s : len - 1 - s;
    const double* xt = x + (static_cast<long>(t) * B + b) * I;
    StepRecord& rec = steps[t];
    rec.active = true;
    rec.h_prev = h;
    rec.c_prev = c;
    std::vector<double> xa(G * H), ha(G * H);
    for (int g = 0; g < G * H; ++g) {
      xa[g] = dot_row(w.w_ih, g, I, xt) + (w.b_ih ? w.b_ih[g] : 0.0);
      ha[g] = dot_row(w.w_hh, g, H, h.data()) + (w.b_hh ? w.b_hh[g] : 0.0);
    }
    rec.gates.assign(G * H, 0.0);
    std::vector<double> h_new(H);
    switch (dims.cell) {
      case CellKind::kRnnTanh:
      case CellKind::kRnnRelu:
        for (int j = 0; j < H; ++j) {
          const double a = xa[j] + ha[j];
          h_new[j] = dims.cell == CellKind::kRnnTanh ? std::tanh(a) : (a > 0 ? a : 0.0);
          rec.gates[j] = h_new[j];
        }
        break;
      case CellKind::kLstm:
        rec.c.assign(H, 0.0);
        for (int j = 0; j < H; ++j) {
          const double i = sig(xa[j] + ha[j]);
          const double f = sig(xa[H + j] + ha[H + j]);
          const double g = std::tanh(xa[2 * H + j] + ha[2 * H + j]);
          const double o = sig(xa[3 * H + j] + ha[3 * H + j]);
          rec.gates[j] = i;
          rec.gates[H + j] = f;
          rec.gates[2 * H + j] = g;
          rec.gates[3 * H + j] = o;
          rec.c[j] = f * c[j] + i * g;
          h_new[j] = o * std::tanh(rec.c[j]);
        }
        c = rec.c;
        break;
      case CellKind::kGru:
        rec.hn.assign(H, 0.0);
        for (int j = 0; j < H; ++j) {
          const double r = sig(xa[j] + ha[j]);
          const double z = sig(xa[H + j] + ha[H + j]);
          const double n = std::tanh(xa[2 * H + j] + r * ha[2 * H + j]);
          rec.gates[j] = r;
          rec.gates[H + j] = z;
          rec.gates[2 * H + j] = n;
          rec.hn[j] = ha[2 * H + j];
          h_new[j] = (1 - z) * n + z * h[j];
        }
        break;
    }
    h = h_new;
  }
}

}  // namespace

void layer_forward_reference(const LayerDims& dims, double* y, double* h_n, double* c_n,
                             const double* x, const int* lengths, const double* h0,
                             const double* c0, const ReferenceWeights* weights) {
  const int T = dims.steps, B = dims.batch, H = dims.hidden_size, D = dims.directions;
  for (long i = 0; i < static_cast<long>(T) * B * D * H; ++i) y[i] = 0.0;
  std::vector<StepRecord> steps;
  std::vector<double> h, c;
  for (int d = 0; d < D; ++d) {
    for (int b = 0; b < B; ++b) {
      run_row(dims, d, b, x, lengths, h0, c0, weights[d], steps, h, c);
      for (int t = 0; t < T; ++t) {
        if (!steps[t].active) continue;
        // the state after step t is the next active step's h_prev, or the final h
        const StepRecord& rec = steps[t];
        for (int j = 0; j < H; ++j) {
          double out;
          if (dims.cell == CellKind::kLstm) out = rec.gates[3 * H + j] * std::tanh(rec.c[j]);
          else if (dims.cell == CellKind::kGru)
            out = (1 - rec.gates[H + j]) * rec.gates[2 * H + j] + rec.gates[H + j] * rec.h_prev[j];
          else out = rec.gates[j];
          y[((static_cast<long>(t) * B + b) * D + d) * H + j] = out;
        }
      }
      for (int j = 0; j < H; ++j) {
        h_n[(static_cast<long>(d) * B + b) * H + j] = h[j];
        if (c_n && dims.cell == CellKind::kLstm) c_n[(static_cast<long>(d) * B + b) * H + j] = c[j];
      }
    }
  }
}

void layer_backward_reference(const LayerDims& dims, double* dx, double* dh0, double* dc0,
                              const ReferenceGrads* grads, const double* dy, const double* dh_n,
                              const double* dc_n, const double* x, const int* lengths,
                              const double* h0, const double* c0,
                              const ReferenceWeights* weights) {
  const int T = dims.steps, B = dims.batch, I = dims.input_size, H = dims.hidden_size;
  const int D = dims.directions, G = gate_count(dims.cell);
  for (long i = 0; i < static_cast<long>(T) * B * I; ++i) dx[i] = 0.0;
  for (int d = 0; d < D; ++d) {
    const ReferenceGrads& g = grads[d];
    for (long i = 0; i < static_cast<long>(G) * H * I; ++i) g.w_ih[i] = 0.0;
    for (long i = 0; i < static_cast<long>(G) * H * H; ++i) g.w_hh[i] = 0.0;
    if (g.b_ih)
      for (int i = 0; i < G * H; ++i) g.b_ih[i] = g.b_hh[i] = 0.0;
  }
  std::vector<StepRecord> steps;
  std::vector<double> h, c;
  for (int d = 0; d < D; ++d) {
    const ReferenceWeights& w = weights[d];
    const ReferenceGrads& g = grads[d];
    for (int b = 0; b < B; ++b) {
      run_row(dims, d, b, x, lengths, h0, c0, w, steps, h, c);
      const int len = lengths ? lengths[b] : T;
      std::vector<double> dh(H, 0.0), dc(H, 0.0);
      for (int j = 0; j < H; ++j) {
        if (dh_n) dh[j] = dh_n[(static_cast<long>(d) * B + b) * H + j];
        if (dc_n && dims.cell == CellKind::kLstm) dc[j] = dc_n[(static_cast<long>(d) * B + b) * H + j];
      }
      // walk the steps in reverse processing order
      for (int s = len - 1; s >= 0; --s) {
        const int t = d == 0 ? s : len - 1 - s;
        const StepRecord& rec = steps[t];
        for (int j = 0; j < H; ++j) dh[j] += dy ? dy[((static_cast<long>(t) * B + b) * D + d) * H + j] : 0.0;
        std::vector<double> dax(G * H), dah(G * H), dh_prev(H, 0.0);
        switch (dims.cell) {
          case CellKind::kRnnTanh:
            for (int j = 0; j < H; ++j) dax[j] = dah[j] = dh[j] * (1 - rec.gates[j] * rec.gates[j]);
            break;
          case CellKind::kRnnRelu:
            for (int j = 0; j < H; ++j) dax[j] = dah[j] = rec.gates[j] > 0 ? dh[j] : 0.0;
            break;
          case CellKind::kLstm:
            for (int j = 0; j < H; ++j) {
              const double i = rec.gates[j], f = rec.gates[H + j], gg = rec.gates[2 * H + j],
                           o = rec.gates[3 * H + j];
              const double tc = std::tanh(rec.c[j]);
              const double dct = dc[j] + dh[j] * o * (1 - tc * tc);
              dax[j] = dct * gg * i * (1 - i);
              dax[H + j] = dct * rec.c_prev[j] * f * (1 - f);
              dax[2 * H + j] = dct * i * (1 - gg * gg);
              dax[3 * H + j] = dh[j] * tc * o * (1 - o);
              dc[j] = dct * f;
            }
            dah = dax;
            break;
          case CellKind::kGru:
            for (int j = 0; j < H; ++j) {
              const double r = rec.gates[j], z = rec.gates[H + j], n = rec.gates[2 * H + j];
              const double dn = dh[j] * (1 - z);
              const double dz = dh[j] * (rec.h_prev[j] - n);
              const double dan = dn * (1 - n * n);
              dax[2 * H + j] = dan;
              dah[2 * H + j] = dan * r;
              dax[j] = dah[j] = dan * rec.hn[j] * r * (1 - r);
              dax[H + j] = dah[H + j] = dz * z * (1 - z);
              dh_prev[j] = dh[j] * z;
            }
            break;
        }
        const double* xt = x + (static_cast<long>(t) * B + b) * I;
        for (int q = 0; q < G * H; ++q) {
          for (int k = 0; k < I; ++k) {
            g.w_ih[static_cast<long>(q) * I + k] += dax[q] * xt[k];
            dx[(static_cast<long>(t) * B + b) * I + k] += dax[q] * w.w_ih[static_cast<long>(q) * I + k];
          }
          for (int k = 0; k < H; ++k) {
            g.w_hh[static_cast<long>(q) * H + k] += dah[q] * rec.h_prev[k];
            dh_prev[k] += dah[q] * w.w_hh[static_cast<long>(q) * H + k];
          }
          if (g.b_ih) {
            g.b_ih[q] += dax[q];
            g.b_hh[q] += dah[q];
          }
        }
        dh = dh_prev;
      }
      for (int j = 0; j < H; ++j) {
        if (dh0) dh0[(static_cast<long>(d) * B + b) * H + j] = dh[j];
        if (dc0 && dims.cell == CellKind::kLstm) dc0[(static_cast<long>(d) * B + b) * H + j] = dc[j];
      }
    }
  }
}

}  // namespace recurrent
