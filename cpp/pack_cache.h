// Packed copies of one weight matrix, kept between calls.
//
// A layer packs w_ih and w_hh into the GEMM's panel layout (gemm.h, PackedMatrix) before it
// multiplies by them. Packing costs as much as the product itself when a call is short (T = 1,
// small B: one step of generation or streaming), so each weight storage owns a PackCache
// (binding/storage.h, Buffer) that keeps the layouts it was packed into, each stamped with the
// storage's version (PyTorch's tensor._version: every write to the storage bumps it, see
// binding/storage.cc). A layout asked for at another version is packed again. The version a
// call reads is taken when the call is made, in program order, so a write queued behind a
// forward (async mode) cannot make that forward or a later one read stale panels. An op that
// only reads a storage leaves its version alone (read_span_of).
//
// A cache can also keep a table computed from its storage and another one (TableKind: a step's
// token table, embedding * w_ih^T), stamped with both versions and the other cache's id.
//
// The cache lives and dies with its storage: a disposed or collected weight frees its packed
// copies with it, and weights shared by two modules share one cache. clear_all() (emptyCache())
// drops every cache's entries; a call that is using one keeps it alive until it returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "gemm.h"

namespace recurrent {

// Which packed form of a weight a layer asks for (a weight is packed in up to four).
enum class PackLayout : int {
  kForwardInput = 0,     // op(B) = w_ih^T (I, G*H): the input projection x * w_ih^T (and a head's x * w^T)
  kForwardRecurrent = 1, // w_hh^T with its rows in gate-block order (H, blocks * G * kGateBlock)
  kBackwardInput = 2,    // op(B) = w_ih (G*H, I): dx = dgates * w_ih
  kBackwardRecurrent = 3,// op(B) = w_hh (G*H, H): dh_prev = dgates * w_hh
};

// A table of rows kept beside the packed forms, computed from this storage and a second one.
enum class TableKind : int {
  kTokenProjection = 0,  // embedding * w_ih^T (vocab, G*H), in the embedding's cache (see step.h)
};

struct CachedWeight;
// What one step call leaves for the next call on the same weights (step.cc: the next step's
// recurrent product of the first layer, made ahead from the state the call left). Opaque here.
struct StepAhead;

class PackCache {
 public:
  using Packer = std::function<void(PackedMatrix&)>;
  using Filler = std::function<void(std::vector<float>&)>;

  PackCache();
  ~PackCache();
  PackCache(const PackCache&) = delete;
  PackCache& operator=(const PackCache&) = delete;

  // The packed form `layout` of the storage at `version` as a (rows, cols) op(B), in the current
  // matmul precision: the kept one when it was packed so, else `pack` fills a new one, which is kept.
  std::shared_ptr<const PackedMatrix> get(PackLayout layout, int rows, int cols, uint64_t version, const Packer& pack);

  // The table `kind` of (rows, cols) floats computed from this storage at `version` and the storage
  // of `partner` at its version, in the current matmul precision: the kept one, else `fill` makes a
  // new one, which is kept (one per kind and precision, like the packed forms).
  std::shared_ptr<const std::vector<float>> table(TableKind kind, int rows, int cols, uint64_t version,
                                                  const CachedWeight& partner, const Filler& fill);

  // What the last step call on these weights left for the next (StepAhead), handed over: the slot
  // stays empty until keep_ahead() fills it again, so two calls never use the same one. Its bytes
  // count in total_bytes(); clear() drops it.
  std::shared_ptr<StepAhead> take_ahead();
  void keep_ahead(std::shared_ptr<StepAhead> ahead, size_t bytes);

  // This cache's number, never given to another cache in the process (a partner's identity: a
  // freed storage's address can come back, its number cannot).
  uint64_t id() const { return id_; }

  // Drops every entry (entries in use stay alive until their users let go).
  void clear();

  // Bytes held by the packed copies of every cache in the process.
  static size_t total_bytes();
  // clear() on every cache; the bytes dropped.
  static size_t clear_all();

 private:
  // What an entry is: a packed form (kind >= 0, a PackLayout) or a table (kind < 0: -1 - TableKind),
  // its precision, shape and the versions (and partner) it was made from.
  struct Key {
    int kind;
    bool bf16;
    int rows, cols;
    uint64_t version;
    uint64_t partner = 0, partner_version = 0;
    bool same_slot(const Key& o) const { return kind == o.kind && bf16 == o.bf16; }
    bool operator==(const Key& o) const {
      return same_slot(o) && rows == o.rows && cols == o.cols && version == o.version && partner == o.partner &&
             partner_version == o.partner_version;
    }
  };
  struct Entry {
    Key key;
    std::shared_ptr<const void> value;
    size_t bytes;
  };
  // The entry of `key`, else make(old) -> (value, bytes) kept in its slot. old: the slot's previous
  // value where nothing outside the cache holds it (taken out of the cache), for make to fill again
  // in place of a new allocation; else null.
  using Maker = std::function<std::pair<std::shared_ptr<const void>, size_t>(std::shared_ptr<const void> old)>;
  std::shared_ptr<const void> find_or_make(const Key& key, const Maker& make);
  void clear_locked();
  void register_once();
  const uint64_t id_;
  std::mutex mutex_;
  std::vector<Entry> entries_;
  bool registered_ = false;
  std::shared_ptr<StepAhead> ahead_;
  size_t ahead_bytes_ = 0;
};

// A weight's cache and the version a call reads it at (cache null: pack for this call only).
struct CachedWeight {
  PackCache* cache = nullptr;
  uint64_t version = 0;
};

// The packed form of a weight: from its cache when it has one, else packed into `scratch`.
// The result stays valid while the returned holder lives (and scratch is untouched).
class PackedWeight {
 public:
  PackedWeight(const CachedWeight& weight, PackLayout layout, int rows, int cols, PackedMatrix& scratch,
               const PackCache::Packer& pack);
  const PackedMatrix& operator*() const { return *matrix_; }
  const PackedMatrix* operator->() const { return matrix_; }

 private:
  std::shared_ptr<const PackedMatrix> kept_;
  const PackedMatrix* matrix_;
};

// The kForwardInput form of a weight w (cols, rows), row-major (a layer's w_ih, a linear head's
// weight): op(B) = w^T (rows, cols), for the products x * w^T. Every caller asks for it through
// here, so all of them find the same kept entry.
PackedWeight forward_input(const CachedWeight& weight, const float* w, int rows, int cols, PackedMatrix& scratch);

}  // namespace recurrent
