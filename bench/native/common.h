// Shared by the native benchmark harnesses: the job list, timing, and one JSON line per result.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace bench {

struct Job {
  const char* cell;  // "lstm" | "gru" | "rnn" (tanh)
  int hidden;
  bool train;  // forward + backward, else inference forward
  int batch;
};

// T = 32, I = H, one layer, one direction: B = 32 (issue 5's configurations, and issue 14's tanh
// RNN at H = 512) and B = 128 for the LSTM and GRU (the CPU issue's targets name both batches).
constexpr int kSteps = 32, kBatch = 32, kLargeBatch = 128;

inline std::vector<Job> jobs() {
  std::vector<Job> out;
  for (int batch : {kBatch, kLargeBatch})
    for (const char* cell : {"lstm", "gru"})
      for (int h : {128, 512})
        for (bool train : {true, false}) out.push_back({cell, h, train, batch});
  for (bool train : {true, false}) out.push_back({"rnn", 512, train, kBatch});
  return out;
}

// The job's name for --only: lstm-512-train at B = 32, lstm-512-train-b128 at another batch.
inline std::string job_name(const Job& job) {
  return std::string(job.cell) + "-" + std::to_string(job.hidden) + "-" + (job.train ? "train" : "inference") +
         (job.batch == kBatch ? "" : "-b" + std::to_string(job.batch));
}

inline int gates_of(const std::string& cell) { return cell == "lstm" ? 4 : cell == "gru" ? 3 : 1; }

// FLOPs of the matmuls: per step 2 B (I + H) G H forward; training adds 2x for backward.
inline double flops(const Job& job, int steps = kSteps) {
  const double per_step = 2.0 * job.batch * (job.hidden + job.hidden) * gates_of(job.cell) * job.hidden;
  return per_step * steps * (job.train ? 3.0 : 1.0);
}

inline double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median seconds of `reps` calls of fn after `warmup` calls; runs at least `min_seconds`.
template <class F>
double median_seconds(F&& fn, int warmup = 3, int reps = 15, double min_seconds = 0.5) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> times;
  const double start = now();
  // at least `reps` runs (3 when a run is slow: stop after ~2 s) and at least `min_seconds`
  while ((static_cast<int>(times.size()) < reps && !(times.size() >= 3 && now() - start > 2.0)) ||
         now() - start < min_seconds) {
    const double t0 = now();
    fn();
    times.push_back(now() - t0);
    if (times.size() > 2000) break;
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

inline void report(const char* library, const Job& job, int threads, double seconds, int steps = kSteps) {
  const double ts = static_cast<double>(steps) * job.batch / seconds;
  std::printf("{\"library\":\"%s\",\"cell\":\"%s\",\"hidden\":%d,\"mode\":\"%s\",\"threads\":%d,\"steps\":%d,"
              "\"batch\":%d,\"seconds\":%.6g,\"timestepSamplesPerSecond\":%.1f,\"gflops\":%.2f}\n",
              library, job.cell, job.hidden, job.train ? "train" : "inference", threads, steps, job.batch, seconds, ts,
              flops(job, steps) / seconds / 1e9);
  std::fflush(stdout);
}

}  // namespace bench
