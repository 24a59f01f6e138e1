// recurrent's CUDA layer (cuda/kernels.cu) timed alone, on the configurations of
// bench/gpu/cudnn_bench.py, printing the same JSON lines. Exits 77 without a device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/gemm.h"
#include "cuda/recurrent.h"

using namespace recurrent;

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  const int T = 32;
  const bool tf32 = std::getenv("RECURRENT_TF32") && std::string(std::getenv("RECURRENT_TF32")) == "1";
  cuda::set_tf32(tf32);
  for (const char* name : {"lstm", "gru"}) {
    const CellKind cell = std::string(name) == "lstm" ? CellKind::kLstm : CellKind::kGru;
    for (int H : {128, 512}) {
      for (int B : {1, 8, 32, 256}) {
        for (bool train : {true, false})
        for (cuda::PersistentMode mode : {cuda::PersistentMode::kNever, cuda::PersistentMode::kAlways}) {
          const int I = H, GH = gate_count(cell) * H;
          const LayerDims dims{cell, T, B, I, H, 1};
          cuda::set_persistent_mode(mode);
          const bool fwd_persistent = cuda::uses_persistent(dims, false), bwd_persistent = cuda::uses_persistent(dims, true);
          if (mode == cuda::PersistentMode::kAlways && !fwd_persistent && !(train && bwd_persistent)) continue;
          const char* path = mode == cuda::PersistentMode::kNever ? "stepwise"
                             : !train ? "persistent"
                             : fwd_persistent && bwd_persistent ? "persistent"
                             : fwd_persistent ? "persistent forward" : "persistent backward";
          auto alloc = [](size_t n) {
            float* p = nullptr;
            cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float));
            cudaMemset(p, 0, std::max<size_t>(n, 1) * sizeof(float));
            return p;
          };
          float *x = alloc(size_t(T) * B * I), *y = alloc(size_t(T) * B * H), *hn = alloc(B * H), *cn = alloc(B * H);
          float *w_ih = alloc(size_t(GH) * I), *w_hh = alloc(size_t(GH) * H), *b_ih = alloc(GH), *b_hh = alloc(GH);
          float *g_ih = alloc(size_t(GH) * I), *g_hh = alloc(size_t(GH) * H), *gb_ih = alloc(GH), *gb_hh = alloc(GH);
          float *dx = alloc(size_t(T) * B * I), *dy = alloc(size_t(T) * B * H);
          float* reserve = alloc(layer_reserve_size(dims));
          float* workspace = alloc(cuda::layer_workspace_size(dims));
          const LayerWeights w{w_ih, w_hh, b_ih, b_hh};
          const LayerGrads g{g_ih, g_hh, gb_ih, gb_hh};
          auto step = [&] {
            cuda::layer_forward(nullptr, dims, y, hn, cn, reserve, x, nullptr, nullptr, nullptr, &w, workspace);
            if (train)
              cuda::layer_backward(nullptr, dims, dx, nullptr, nullptr, &g, dy, nullptr, nullptr, reserve, x, nullptr, &w, workspace);
          };
          for (int i = 0; i < 5; ++i) step();
          cudaDeviceSynchronize();
          std::vector<float> times;
          cudaEvent_t start, stop;
          cudaEventCreate(&start);
          cudaEventCreate(&stop);
          for (int i = 0; i < 30; ++i) {
            cudaEventRecord(start);
            step();
            cudaEventRecord(stop);
            cudaEventSynchronize(stop);
            float ms = 0;
            cudaEventElapsedTime(&ms, start, stop);
            times.push_back(ms / 1000.0f);
          }
          std::sort(times.begin(), times.end());
          const double seconds = times[times.size() / 2];
          const double flops = 2.0 * B * (I + H) * GH * T * (train ? 3 : 1);
          std::printf("{\"library\":\"recurrent (CUDA)\",\"precision\":\"%s\",\"path\":\"%s\",\"cell\":\"%s\",\"hidden\":%d,\"batch\":%d,\"mode\":\"%s\",\"steps\":%d,"
                      "\"seconds\":%g,\"timestepSamplesPerSecond\":%.1f,\"gflops\":%.2f,\"device\":\"%s\"}\n",
                      tf32 ? "tf32" : "fp32", path, name, H, B, train ? "train" : "inference", T, seconds, T * B / seconds, flops / seconds / 1e9, prop.name);
          for (float* p : {x, y, hn, cn, w_ih, w_hh, b_ih, b_hh, g_ih, g_hh, gb_ih, gb_hh, dx, dy, reserve, workspace}) cudaFree(p);
          cudaEventDestroy(start);
          cudaEventDestroy(stop);
        }
      }
    }
  }
  return 0;
}
