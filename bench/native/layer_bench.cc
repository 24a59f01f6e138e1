// One recurrent layer of `recurrent`'s CPU kernels, timed alone (no Node.js): the same
// jobs as onednn_bench.cc, so the two print comparable lines.
//   layer_bench [threads...] [--steps T] [--only JOB]    (RECURRENT_BF16=1: BF16 matrix products)
// JOB: bench::job_name's, e.g. lstm-512-train (B = 32) or gru-128-inference-b128.
#include <cstring>
#include <random>

#include "bench/native/common.h"
#include "cpp/gemm.h"
#include "cpp/pack_cache.h"
#include "cpp/recurrent.h"
#include "cpp/thread_pool.h"

using namespace recurrent;

int main(int argc, char** argv) {
  std::vector<int> thread_counts;
  std::vector<int> step_counts = {bench::kSteps};
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
      step_counts.clear();
      for (char* p = std::strtok(argv[++i], ","); p; p = std::strtok(nullptr, ",")) step_counts.push_back(std::atoi(p));
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only.push_back(argv[++i]);  // e.g. lstm-512-train
    } else {
      thread_counts.push_back(std::atoi(argv[i]));
    }
  }
  if (thread_counts.empty()) thread_counts.push_back(num_threads());
  // RECURRENT_BF16=1: BF16 matrix products (setFloat32MatmulPrecision('medium')), where the CPU has them
  if (const char* bf16 = std::getenv("RECURRENT_BF16"); bf16 && std::strcmp(bf16, "1") == 0 && !set_bf16_matmul(true))
    std::fprintf(stderr, "BF16 unavailable: %s\n", bf16_unavailable_reason());
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-0.1f, 0.1f);
  auto fill = [&](std::vector<float>& v) { for (float& x : v) x = dist(rng); };
  for (const bench::Job& job : bench::jobs()) {
    if (!only.empty() && std::find(only.begin(), only.end(), bench::job_name(job)) == only.end()) continue;
    for (int T : step_counts) {
      const int B = job.batch, H = job.hidden, I = H;
      const std::string kind = job.cell;
      const CellKind cell = kind == "lstm" ? CellKind::kLstm : kind == "gru" ? CellKind::kGru : CellKind::kRnnTanh;
      const int GH = gate_count(cell) * H;
      const LayerDims dims{cell, T, B, I, H, 1};
      std::vector<float> x(static_cast<size_t>(T) * B * I), w_ih(static_cast<size_t>(GH) * I), w_hh(static_cast<size_t>(GH) * H),
          b_ih(GH), b_hh(GH), y(static_cast<size_t>(T) * B * H), dy(y.size()), hn(B * H), cn(B * H),
          reserve(layer_reserve_size(dims)), dx(x.size()), g_ih(w_ih.size()), g_hh(w_hh.size()), gb_ih(GH), gb_hh(GH);
      for (auto* v : {&x, &w_ih, &w_hh, &b_ih, &b_hh, &dy}) fill(*v);
      // The packed weights are kept as the addon keeps them (cpp/pack_cache.h): in inference packed
      // once (oneDNN's weights are reordered once, untimed), in training once per iteration, as
      // once per optimizer step in fit (the version bumps; forward and backward share the packs).
      PackCache ih_cache, hh_cache;
      uint64_t version = 0;
      const LayerGrads grads{g_ih.data(), g_hh.data(), gb_ih.data(), gb_hh.data()};
      for (int threads : thread_counts) {
        set_num_threads(threads);
        const double seconds = bench::median_seconds([&] {
          if (job.train) ++version;
          const LayerWeights weights{w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data(), CachedWeight{&ih_cache, version},
                                     CachedWeight{&hh_cache, version}};
          layer_forward_cpu(dims, y.data(), hn.data(), cn.data(), job.train ? reserve.data() : nullptr, x.data(), nullptr,
                            nullptr, nullptr, &weights);
          if (job.train)
            layer_backward_cpu(dims, dx.data(), nullptr, nullptr, &grads, dy.data(), nullptr, nullptr, reserve.data(),
                               x.data(), nullptr, &weights);
        });
        bench::report("recurrent", job, threads, seconds, T);
      }
    }
  }
  return 0;
}
