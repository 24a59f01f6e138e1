// step() calls that follow each other against calls that do not (cpp/step.cc's StepAhead): one
// step of a stack at T = 1 on one thread, where each call either gets the state the last one left
// (it takes the first layer's recurrent product made ahead and reads its weights in the order that
// finds the last call's in L2) or, the slot emptied before it, runs as a lone call. Blocks of
// calls of both kinds alternate in one process; medians of 16 blocks. No Node.js.
//   step_bench [threads = 1]
// One line per shape: following, not following (us per call), their ratio and the range of the
// 16 pairs' ratios. I = 64; LSTM and GRU; 1 and 2 layers; H = 128, 256, 512; B = 1 and 8.
#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <vector>

#include "bench/native/common.h"
#include "cpp/pack_cache.h"
#include "cpp/step.h"
#include "cpp/thread_pool.h"

using namespace recurrent;

namespace {

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  set_num_threads(argc > 1 ? std::atoi(argv[1]) : 1);
  std::vector<double> ratios;
  for (CellKind cell : {CellKind::kLstm, CellKind::kGru})
    for (int L : {1, 2})
      for (int H : {128, 256, 512})
        for (int B : {1, 8}) {
          const int I = 64, G = gate_count(cell);
          std::vector<std::vector<float>> w(4 * L);
          std::vector<std::unique_ptr<PackCache>> caches;
          std::vector<LayerWeights> layers(L);
          for (int l = 0; l < L; ++l) {
            const int in = l == 0 ? I : H;
            w[4 * l].resize(static_cast<size_t>(G) * H * in);
            w[4 * l + 1].resize(static_cast<size_t>(G) * H * H);
            w[4 * l + 2].assign(G * H, 0.1f);
            w[4 * l + 3].assign(G * H, 0.1f);
            for (size_t j = 0; j < w[4 * l].size(); ++j) w[4 * l][j] = 1e-3f * ((j * 7) % 101) - 0.05f;
            for (size_t j = 0; j < w[4 * l + 1].size(); ++j) w[4 * l + 1][j] = 1e-3f * ((j * 13) % 97) - 0.05f;
            LayerWeights& lw = layers[l];
            lw.w_ih = w[4 * l].data();
            lw.w_hh = w[4 * l + 1].data();
            lw.b_ih = w[4 * l + 2].data();
            lw.b_hh = w[4 * l + 3].data();
            caches.emplace_back(new PackCache());
            caches.emplace_back(new PackCache());
            lw.ih_cache = CachedWeight{caches[2 * l].get(), 1};
            lw.hh_cache = CachedWeight{caches[2 * l + 1].get(), 1};
          }
          const StepDims dims{cell, B, I, H, L, 0};
          std::vector<float> x(static_cast<size_t>(B) * I, 0.3f), h(static_cast<size_t>(L) * B * H, 0.0f),
              c(static_cast<size_t>(L) * B * H, 0.0f), out(static_cast<size_t>(B) * H);
          std::vector<double> following, alone, pairs;
          for (int round = 0; round < 16; ++round) {
            for (bool follow : {true, false}) {
              const double seconds = bench::median_seconds(
                  [&] {
                    if (!follow) caches[1]->take_ahead();  // this call does not follow
                    stack_step_cpu(dims, out.data(), h.data(), cell == CellKind::kLstm ? c.data() : nullptr, nullptr, nullptr,
                                   x.data(), layers.data(), nullptr, nullptr, CachedWeight{});
                  },
                  10, 140, 0.0);
              (follow ? following : alone).push_back(seconds * 1e6);
            }
            pairs.push_back(alone.back() / following.back());
          }
          ratios.push_back(median_of(pairs));
          std::printf("%s L=%d H=%d B=%d: following %.1f us, alone %.1f us, %.2fx (pairs %.2f-%.2fx)\n",
                      cell == CellKind::kLstm ? "lstm" : "gru", L, H, B, median_of(following), median_of(alone), ratios.back(),
                      *std::min_element(pairs.begin(), pairs.end()), *std::max_element(pairs.begin(), pairs.end()));
        }
  std::printf("%zu shapes: median %.2fx, lowest %.2fx\n", ratios.size(), median_of(ratios),
              *std::min_element(ratios.begin(), ratios.end()));
}
