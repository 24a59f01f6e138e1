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

std::atomic<uint64_t> g_next_id{1};

}  // namespace

PackCache::PackCache() : id_(g_next_id++) {}

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

std::shared_ptr<const void> PackCache::find_or_make(const Key& key, const Maker& make) {
  std::shared_ptr<const void> old;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry& e : entries_)
      if (e.key == key) return e.value;
    // The slot's older version, where only this cache holds it (no call is using it, and none can
    // get it once it is out of entries_): made again in its place. A layer's weights change at
    // every optimizer step, and a new allocation of their panels (4 MB for each of an LSTM's four
    // layouts at H = 512) cost page faults and the zeroing of every page at every step.
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->key.same_slot(key) && it->value.use_count() == 1) {
        old = std::move(it->value);
        g_bytes -= it->bytes;
        entries_.erase(it);
        break;
      }
  }
  // made outside the lock (it may use the thread pool); two calls racing both make it, the
  // later one's is kept
  auto [fresh, bytes] = make(std::move(old));
  register_once();
  std::lock_guard<std::mutex> lock(mutex_);
  // one entry per slot (layout or table, and precision): an older version is never asked for again
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (it->key.same_slot(key)) {
      g_bytes -= it->bytes;
      entries_.erase(it);
      break;
    }
  g_bytes += bytes;
  entries_.push_back({key, fresh, bytes});
  return fresh;
}

void PackCache::register_once() {
  std::lock_guard<std::mutex> registry_lock(registry_mutex());
  if (!registered_) {
    registry().push_back(this);
    registered_ = true;
  }
}

std::shared_ptr<StepAhead> PackCache::take_ahead() {
  std::lock_guard<std::mutex> lock(mutex_);
  g_bytes -= ahead_bytes_;
  ahead_bytes_ = 0;
  return std::move(ahead_);
}

void PackCache::keep_ahead(std::shared_ptr<StepAhead> ahead, size_t bytes) {
  register_once();
  std::lock_guard<std::mutex> lock(mutex_);
  g_bytes -= ahead_bytes_;
  ahead_ = std::move(ahead);
  ahead_bytes_ = ahead_ ? bytes : 0;
  g_bytes += ahead_bytes_;
}

std::shared_ptr<const PackedMatrix> PackCache::get(PackLayout layout, int rows, int cols, uint64_t version, const Packer& pack) {
  const Key key{static_cast<int>(layout), bf16_matmul(), rows, cols, version};
  return std::static_pointer_cast<const PackedMatrix>(find_or_make(key, [&](std::shared_ptr<const void> old) {
    // (an old value of this slot is a PackedMatrix the cache made, not const itself)
    auto fresh = old ? std::const_pointer_cast<PackedMatrix>(std::static_pointer_cast<const PackedMatrix>(old))
                     : std::make_shared<PackedMatrix>();
    pack(*fresh);
    return std::pair<std::shared_ptr<const void>, size_t>(fresh, fresh->bytes());
  }));
}

std::shared_ptr<const std::vector<float>> PackCache::table(TableKind kind, int rows, int cols, uint64_t version,
                                                           const CachedWeight& partner, const Filler& fill) {
  const Key key{-1 - static_cast<int>(kind), bf16_matmul(), rows, cols, version, partner.cache ? partner.cache->id() : 0,
                partner.version};
  return std::static_pointer_cast<const std::vector<float>>(find_or_make(key, [&](std::shared_ptr<const void>) {
    auto fresh = std::make_shared<std::vector<float>>();
    fill(*fresh);
    return std::pair<std::shared_ptr<const void>, size_t>(fresh, fresh->capacity() * sizeof(float));
  }));
}

void PackCache::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  clear_locked();
}

void PackCache::clear_locked() {
  for (const Entry& e : entries_) g_bytes -= e.bytes;
  entries_.clear();
  g_bytes -= ahead_bytes_;
  ahead_bytes_ = 0;
  ahead_.reset();
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

PackedWeight forward_input(const CachedWeight& weight, const float* w, int rows, int cols, PackedMatrix& scratch) {
  return PackedWeight(weight, PackLayout::kForwardInput, rows, cols, scratch,
                      [&](PackedMatrix& packed) { packed.pack(true, rows, cols, w, rows); });
}

}  // namespace recurrent
