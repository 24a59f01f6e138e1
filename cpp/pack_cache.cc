// Packed weights kept between calls (see pack_cache.h).
#include "pack_cache.h"

#include <algorithm>
#include <atomic>

namespace recurrent {

namespace {

// Every cache that holds or held an entry, for clear_all(); guarded by registry_mutex().
std::mutex& registry_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
std::vector<PackCache*>& registry() {
  static auto* r = new std::vector<PackCache*>();
  return *r;
}
std::atomic<size_t> g_bytes{0};

}  // namespace

PackCache::~PackCache() {
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    if (registered_) {
      auto& all = registry();
      all.erase(std::find(all.begin(), all.end(), this));
    }
  }
  clear_locked();
}

std::shared_ptr<const PackedMatrix> PackCache::get(PackLayout layout, int rows, int cols, uint64_t version, const Packer& pack) {
  const bool bf16 = bf16_matmul();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry& e : entries_)
      if (e.layout == layout && e.bf16 == bf16 && e.version == version && e.packed->rows() == rows && e.packed->cols() == cols)
        return e.packed;
  }
  // packed outside the lock (it may use the thread pool); two calls racing both pack, the
  // later one's copy is kept
  auto fresh = std::make_shared<PackedMatrix>();
  pack(*fresh);
  {
    std::lock_guard<std::mutex> registry_lock(registry_mutex());
    if (!registered_) {
      registry().push_back(this);
      registered_ = true;
    }
  }
  std::lock_guard<std::mutex> lock(mutex_);
  // one entry per layout and precision: an older version is never asked for again
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (it->layout == layout && it->bf16 == bf16) {
      g_bytes -= it->packed->bytes();
      entries_.erase(it);
      break;
    }
  g_bytes += fresh->bytes();
  entries_.push_back({layout, bf16, version, fresh});
  return fresh;
}

void PackCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  clear_locked();
}

void PackCache::clear_locked() {
  for (const Entry& e : entries_) g_bytes -= e.packed->bytes();
  entries_.clear();
}

size_t PackCache::total_bytes() { return g_bytes.load(); }

size_t PackCache::clear_all() {
  const size_t before = g_bytes.load();
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (PackCache* cache : registry()) cache->clear();
  return before - g_bytes.load();
}

PackedWeight::PackedWeight(const CachedWeight& weight, PackLayout layout, int rows, int cols, PackedMatrix& scratch,
                           const PackCache::Packer& pack) {
  if (weight.cache) {
    kept_ = weight.cache->get(layout, rows, cols, weight.version, pack);
    matrix_ = kept_.get();
  } else {
    pack(scratch);
    matrix_ = &scratch;
  }
}

}  // namespace recurrent
