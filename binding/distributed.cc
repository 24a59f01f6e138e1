// Node-API glue for the collectives (cpp/collective.h).
//
// Two kinds of call:
// - blocking ones (allReduce of one tensor, broadcast, barrier, scalars, bytes): they first
//   wait for the stream to drain, so that every collective an earlier queued job submitted
//   is ahead of theirs, then run on the communication thread while the main thread waits;
// - the gradient buckets of data-parallel training: allReduceStart queues a stream job that
//   packs the bucket (once backward has written it) and hands it to the communication
//   thread, and returns a ticket; allReduceWait queues a job that waits for that ticket.
//   Between the two, the stream worker goes on with the rest of backward, so the reduction
//   of one bucket overlaps the computation of the next.
// Tensors on 'cuda' are staged through host memory (on_host), with the main thread waiting, so
// no kernel is queued behind the copies' backs (CUDA-aware MPI or NCCL would slot in there).
#include "distributed.h"

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../cpp/collective.h"
#include "../cuda/allocator.h"
#include "args.h"
#include "storage.h"
#include "stream.h"

namespace recurrent {

namespace {

using collective::ReduceOp;

[[noreturn]] void throw_distributed(Napi::Env env, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_DISTRIBUTED"));
  throw error;
}

void expect_initialized(Napi::Env env, const char* fn) {
  if (!collective::initialized())
    throw_distributed(env, std::string(fn) + ": call initDistributed() first");
}

ReduceOp op_arg(const Napi::Value& value) {
  switch (int_arg(value, "op", 0, 2)) {
    case 1: return ReduceOp::kMax;
    case 2: return ReduceOp::kMin;
    default: return ReduceOp::kSum;
  }
}

// Runs `job` on the communication thread and waits for it (after the stream drained).
void run_blocking(Napi::Env env, std::function<void()> job) {
  stream_of(env).wait_idle();
  try {
    collective::submit(std::move(job)).get();
  } catch (const std::exception& e) {
    throw_distributed(env, e.what());
  }
}

struct Span {
  float* data;
  int64_t count;
  bool cuda;
};

std::vector<Span> spans_arg(const Napi::Value& value, const char* name) {
  Napi::Env env = value.Env();
  if (!value.IsArray()) throw_type(env, std::string(name) + " must be an array of storages");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<Span> out;
  out.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Storage* storage = Storage::From(array.Get(i), name);
    float* data = span_of(array.Get(i), name, 0, storage->length());
    out.push_back(Span{data, storage->length(), storage->on_cuda()});
  }
  return out;
}

// Runs `fn` (a collective, in place) on the spans as one message of host memory: a single
// host span where it lies, else packed into one buffer (device memory copied through the host,
// in the CUDA stream's order) and unpacked after. Runs on the communication thread.
void on_host(const std::vector<Span>& spans, const std::function<void(float*, int64_t)>& fn) {
  if (spans.size() == 1 && !spans[0].cuda) {
    fn(spans[0].data, spans[0].count);
    return;
  }
  int64_t total = 0;
  for (const Span& s : spans) total += s.count;
  std::vector<float> packed(static_cast<size_t>(total));
  int64_t at = 0;
  for (const Span& s : spans) {
    if (s.cuda) cuda::copy(packed.data() + at, s.data, static_cast<size_t>(s.count), cuda::CopyKind::kDeviceToHost);
    else std::memcpy(packed.data() + at, s.data, static_cast<size_t>(s.count) * sizeof(float));
    at += s.count;
  }
  fn(packed.data(), total);
  at = 0;
  for (const Span& s : spans) {
    if (s.cuda) cuda::copy(s.data, packed.data() + at, static_cast<size_t>(s.count), cuda::CopyKind::kHostToDevice);
    else std::memcpy(s.data, packed.data() + at, static_cast<size_t>(s.count) * sizeof(float));
    at += s.count;
  }
}

void reduce_spans(const std::vector<Span>& spans, ReduceOp op, float scale) {
  on_host(spans, [op, scale](float* data, int64_t count) { collective::allreduce_floats(data, count, op, scale); });
}

// Tickets of bucket reductions in flight: set by the start job, taken by the wait job
// (both run in stream order).
std::mutex g_tickets_mutex;
std::map<uint64_t, std::shared_future<void>> g_tickets;
uint64_t g_next_ticket = 1;

}  // namespace

// distributedStatus() -> { available, engine?, library?, reason?, initialized, rank?, worldSize? }
Napi::Value DistributedStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const collective::Status& s = collective::status();
  Napi::Object out = Napi::Object::New(env);
  out.Set("available", s.available);
  if (!s.engine.empty()) out.Set("engine", s.engine);
  if (!s.library.empty()) out.Set("library", s.library);
  if (!s.reason.empty()) out.Set("reason", s.reason);
  const bool ready = collective::initialized();
  out.Set("initialized", ready);
  if (ready) {
    out.Set("rank", collective::world().rank);
    out.Set("worldSize", collective::world().size);
    out.Set("mpi", collective::world().mpi);
  }
  return out;
}

// distributedInit() -> { rank, worldSize, localRank, localSize, mpi }
Napi::Value DistributedInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  collective::World w;
  try {
    w = collective::init();
  } catch (const std::exception& e) {
    throw_distributed(env, e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("rank", w.rank);
  out.Set("worldSize", w.size);
  out.Set("localRank", w.local_rank);
  out.Set("localSize", w.local_size);
  out.Set("mpi", w.mpi);
  return out;
}

// allReduce(storages, op, scale): in place, blocking; op 0 sum, 1 max, 2 min; times scale after.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  begin_op();
  Napi::Env env = info.Env();
  expect_args(info, 3, "allReduce");
  expect_initialized(env, "allReduce");
  std::vector<Span> spans = spans_arg(info[0], "tensors");
  const ReduceOp op = op_arg(info[1]);
  const float scale = static_cast<float>(number_arg(info[2], "scale"));
  std::vector<std::shared_ptr<Buffer>> keep;  // alive while this call blocks
  keep.swap(current_keep());
  if (spans.empty()) return env.Undefined();
  run_blocking(env, [spans, op, scale] { reduce_spans(spans, op, scale); });
  return env.Undefined();
}

// allReduceStart(storages, op, scale) -> ticket: queues the bucket's reduction in stream order.
Napi::Value AllReduceStart(const Napi::CallbackInfo& info) {
  begin_op();
  Napi::Env env = info.Env();
  expect_args(info, 3, "allReduceStart");
  expect_initialized(env, "allReduceStart");
  std::vector<Span> spans = spans_arg(info[0], "tensors");
  const ReduceOp op = op_arg(info[1]);
  const float scale = static_cast<float>(number_arg(info[2], "scale"));
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(g_tickets_mutex);
    ticket = g_next_ticket++;
  }
  if (op_on_cuda()) {
    // staged through the host at once (the CUDA stream orders the copies)
    current_keep().clear();
    run_blocking(env, [spans, op, scale] { reduce_spans(spans, op, scale); });
    return Napi::Number::New(env, static_cast<double>(ticket));
  }
  std::vector<std::shared_ptr<Buffer>> held = current_keep();  // the communication job holds them too
  dispatch(env, [spans, op, scale, ticket, held] {
    std::shared_future<void> done = collective::submit([spans, op, scale, held] { reduce_spans(spans, op, scale); });
    std::lock_guard<std::mutex> lock(g_tickets_mutex);
    g_tickets[ticket] = done;
  });
  return Napi::Number::New(env, static_cast<double>(ticket));
}

// allReduceWait(ticket): queues a job that waits for the bucket's reduction.
Napi::Value AllReduceWait(const Napi::CallbackInfo& info) {
  begin_op();
  Napi::Env env = info.Env();
  expect_args(info, 1, "allReduceWait");
  const uint64_t ticket = static_cast<uint64_t>(int_arg(info[0], "ticket", 1, int64_t{1} << 52));
  dispatch(env, [ticket] {
    std::shared_future<void> done;
    {
      std::lock_guard<std::mutex> lock(g_tickets_mutex);
      auto it = g_tickets.find(ticket);
      if (it == g_tickets.end()) return;  // staged synchronously (cuda), already done
      done = it->second;
      g_tickets.erase(it);
    }
    done.get();  // rethrows the reduction's failure into the stream
  });
  return env.Undefined();
}

// allReduceScalars(values: Float64Array, op): in place, blocking.
Napi::Value AllReduceScalars(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "allReduceScalars");
  expect_initialized(env, "allReduceScalars");
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_type(env, "values must be a Float64Array");
  Napi::Float64Array array = info[0].As<Napi::Float64Array>();
  const ReduceOp op = op_arg(info[1]);
  std::vector<double> values(array.Data(), array.Data() + array.ElementLength());
  double* data = values.data();
  const int count = static_cast<int>(values.size());
  run_blocking(env, [data, count, op] { collective::allreduce_doubles(data, count, op); });
  std::memcpy(array.Data(), values.data(), values.size() * sizeof(double));
  return array;
}

// broadcast(storage, root): the root's values to every rank, in place, blocking.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  begin_op();
  Napi::Env env = info.Env();
  expect_args(info, 2, "broadcast");
  expect_initialized(env, "broadcast");
  Storage* storage = Storage::From(info[0], "tensor");
  const std::vector<Span> spans{{span_of(info[0], "tensor", 0, storage->length()), storage->length(), storage->on_cuda()}};
  const int root = static_cast<int>(int_arg(info[1], "root", 0, collective::world().size - 1));
  std::vector<std::shared_ptr<Buffer>> keep;  // alive while this call blocks
  keep.swap(current_keep());
  run_blocking(env, [spans, root] {
    on_host(spans, [root](float* data, int64_t count) { collective::broadcast_bytes(data, count * int64_t{sizeof(float)}, root); });
  });
  return env.Undefined();
}

// broadcastBytes(bytes: Uint8Array | null, root) -> Uint8Array: the root's bytes on every rank
// (other ranks pass null); the length goes first.
Napi::Value BroadcastBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_args(info, 2, "broadcastBytes");
  expect_initialized(env, "broadcastBytes");
  const int root = static_cast<int>(int_arg(info[1], "root", 0, collective::world().size - 1));
  std::vector<uint8_t> bytes;
  if (collective::world().rank == root) {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw_type(env, "bytes must be a Uint8Array on the root rank");
    Napi::Uint8Array array = info[0].As<Napi::Uint8Array>();
    bytes.assign(array.Data(), array.Data() + array.ElementLength());
  }
  double length = static_cast<double>(bytes.size());
  run_blocking(env, [&length, root] { collective::broadcast_bytes(&length, sizeof(length), root); });
  bytes.resize(static_cast<size_t>(length));
  uint8_t* data = bytes.data();
  const int64_t n = static_cast<int64_t>(bytes.size());
  if (n > 0) run_blocking(env, [data, n, root] { collective::broadcast_bytes(data, n, root); });
  Napi::Uint8Array out = Napi::Uint8Array::New(env, bytes.size());
  if (n > 0) std::memcpy(out.Data(), bytes.data(), bytes.size());
  return out;
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  expect_initialized(env, "barrier");
  run_blocking(env, [] { collective::barrier_now(); });
  return env.Undefined();
}

// distributedAbort(code): ends every rank of the job now.
Napi::Value DistributedAbort(const Napi::CallbackInfo& info) {
  expect_args(info, 1, "distributedAbort");
  collective::abort_all(static_cast<int>(int_arg(info[0], "code", 0, 255)));
}

// distributedShutdown(): finalizes MPI (at process exit).
Napi::Value DistributedShutdown(const Napi::CallbackInfo& info) {
  collective::shutdown();
  return info.Env().Undefined();
}

}  // namespace recurrent
