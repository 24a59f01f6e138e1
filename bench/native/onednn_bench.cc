// oneDNN's LSTM, GRU and vanilla (tanh) RNN primitives (Debian's libdnnl-dev) on the jobs of layer_bench.cc:
// forward_training + backward, or forward_inference; f32; weights in the layouts
// oneDNN prefers (format_tag::any, filled through a plain buffer and a reorder, not timed). The GRU is
// oneDNN's linear-before-reset GRU, which is PyTorch's GRU.
//   onednn_bench [threads...] [--only JOB]    (JOB as in layer_bench.cc)
#include <omp.h>

#include <cstring>
#include <dnnl.hpp>
#include <random>
#include <unordered_map>

#include "bench/native/common.h"

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

const int kArgs[] = {DNNL_ARG_SRC_LAYER, DNNL_ARG_SRC_ITER, DNNL_ARG_SRC_ITER_C, DNNL_ARG_WEIGHTS_LAYER,
                     DNNL_ARG_WEIGHTS_ITER, DNNL_ARG_BIAS, DNNL_ARG_DST_LAYER, DNNL_ARG_DST_ITER, DNNL_ARG_DST_ITER_C,
                     DNNL_ARG_WORKSPACE, DNNL_ARG_DIFF_SRC_LAYER, DNNL_ARG_DIFF_SRC_ITER, DNNL_ARG_DIFF_SRC_ITER_C,
                     DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER, DNNL_ARG_DIFF_BIAS,
                     DNNL_ARG_DIFF_DST_LAYER, DNNL_ARG_DIFF_DST_ITER, DNNL_ARG_DIFF_DST_ITER_C};

// Memory for every argument the primitive takes, filled with small values; arguments
// shared with `shared` (the forward's, for backward) reuse its memory.
std::unordered_map<int, memory> arguments(const primitive_desc_base& pd, const engine& eng, std::mt19937& rng,
                                          const std::unordered_map<int, memory>* shared = nullptr) {
  std::uniform_real_distribution<float> dist(-0.1f, 0.1f);
  std::unordered_map<int, memory> args;
  for (int arg : kArgs) {
    const memory::desc md = pd.query_md(query::exec_arg_md, arg);
    if (md.get_size() == 0) continue;
    if (shared && shared->count(arg) && shared->at(arg).get_desc() == md) {
      args[arg] = shared->at(arg);
      continue;
    }
    memory m(md, eng);
    if (arg == DNNL_ARG_WEIGHTS_LAYER || arg == DNNL_ARG_WEIGHTS_ITER || arg == DNNL_ARG_DIFF_WEIGHTS_LAYER ||
        arg == DNNL_ARG_DIFF_WEIGHTS_ITER) {
      // Weights go through a plain ldigo buffer and a reorder: the layout oneDNN picks may be
      // opaque. forward_inference picks a packed GEMM format, and random floats written straight
      // into it made its LSTM "run" 2.6x faster than the FMA peak (25 ms instead of 66 ms at
      // H = 512 on a Zen 2 core; the reordered weights give the right output and the real time).
      memory plain(memory::desc(md.dims(), dt::f32, tag::ldigo), eng);
      float* p = static_cast<float*>(plain.get_data_handle());
      for (size_t i = 0; i < plain.get_desc().get_size() / sizeof(float); ++i) p[i] = dist(rng);
      stream strm(eng);
      reorder(plain, m).execute(strm, plain, m);
      strm.wait();
    } else {
      float* p = static_cast<float*>(m.get_data_handle());
      for (size_t i = 0; i < md.get_size() / sizeof(float); ++i) p[i] = dist(rng);
    }
    args[arg] = m;
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> thread_counts;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only.push_back(argv[++i]);
    else thread_counts.push_back(std::atoi(argv[i]));
  }
  if (thread_counts.empty()) thread_counts.push_back(omp_get_max_threads());
  engine eng(engine::kind::cpu, 0);
  stream strm(eng);
  std::mt19937 rng(1);
  // oneDNN (OpenMP build) fixes a primitive's thread count when the primitive is created:
  // create them after setting the count
  for (int threads : thread_counts)
  for (const bench::Job& job : bench::jobs()) {
    if (!only.empty() && std::find(only.begin(), only.end(), bench::job_name(job)) == only.end()) continue;
    omp_set_num_threads(threads);
    const bool lstm = std::strcmp(job.cell, "lstm") == 0, rnn = std::strcmp(job.cell, "rnn") == 0;
    const memory::dim T = bench::kSteps, N = job.batch, H = job.hidden, C = H, G = bench::gates_of(job.cell);
    const memory::desc src_layer({T, N, C}, dt::f32, tag::tnc), dst_layer({T, N, H}, dt::f32, tag::tnc);
    const memory::desc iter({1, 1, N, H}, dt::f32, tag::ldnc);
    const memory::desc w_layer({1, 1, C, G, H}, dt::f32, tag::any), w_iter({1, 1, H, G, H}, dt::f32, tag::any);
    const memory::desc bias({1, 1, lstm || rnn ? G : G + 1, H}, dt::f32, tag::ldgo);
    const auto direction = rnn_direction::unidirectional_left2right;
    const prop_kind fwd_kind = job.train ? prop_kind::forward_training : prop_kind::forward_inference;
    primitive fwd, bwd;
    std::unordered_map<int, memory> fwd_args, bwd_args;
    if (lstm) {
      lstm_forward::primitive_desc fpd({fwd_kind, direction, src_layer, iter, iter, w_layer, w_iter, bias, dst_layer, iter, iter}, eng);
      fwd = lstm_forward(fpd);
      fwd_args = arguments(fpd, eng, rng);
      if (job.train) {
        lstm_backward::primitive_desc bpd({prop_kind::backward, direction, src_layer, iter, iter, w_layer, w_iter, bias, dst_layer,
                                           iter, iter, src_layer, iter, iter, w_layer, w_iter, bias, dst_layer, iter, iter},
                                          eng, fpd);
        bwd = lstm_backward(bpd);
        bwd_args = arguments(bpd, eng, rng, &fwd_args);
      }
    } else if (rnn) {
      const algorithm tanh = algorithm::eltwise_tanh;
      vanilla_rnn_forward::primitive_desc fpd({fwd_kind, tanh, direction, src_layer, iter, w_layer, w_iter, bias, dst_layer, iter}, eng);
      fwd = vanilla_rnn_forward(fpd);
      fwd_args = arguments(fpd, eng, rng);
      if (job.train) {
        vanilla_rnn_backward::primitive_desc bpd({prop_kind::backward, tanh, direction, src_layer, iter, w_layer, w_iter, bias,
                                                  dst_layer, iter, src_layer, iter, w_layer, w_iter, bias, dst_layer, iter},
                                                 eng, fpd);
        bwd = vanilla_rnn_backward(bpd);
        bwd_args = arguments(bpd, eng, rng, &fwd_args);
      }
    } else {
      lbr_gru_forward::primitive_desc fpd({fwd_kind, direction, src_layer, iter, w_layer, w_iter, bias, dst_layer, iter}, eng);
      fwd = lbr_gru_forward(fpd);
      fwd_args = arguments(fpd, eng, rng);
      if (job.train) {
        lbr_gru_backward::primitive_desc bpd({prop_kind::backward, direction, src_layer, iter, w_layer, w_iter, bias, dst_layer, iter,
                                              src_layer, iter, w_layer, w_iter, bias, dst_layer, iter},
                                             eng, fpd);
        bwd = lbr_gru_backward(bpd);
        bwd_args = arguments(bpd, eng, rng, &fwd_args);
      }
    }
    const double seconds = bench::median_seconds([&] {
      fwd.execute(strm, fwd_args);
      if (job.train) bwd.execute(strm, bwd_args);
      strm.wait();
    });
    bench::report("oneDNN", job, threads, seconds);
  }
  return 0;
}
