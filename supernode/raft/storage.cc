#include "supernode/raft/storage.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace starling::raft {

MemoryStorage::MemoryStorage() : ents_(1) {}

MemoryStorage::MemoryStorage(ConfState conf) : conf_(conf), ents_(1) {
  snapshot_.meta.conf = std::move(conf);
}

std::pair<HardState, ConfState> MemoryStorage::initial_state() const {
  return {hard_state_, conf_};
}

LogIndex MemoryStorage::first_index() const { return ents_[0].index + 1; }

LogIndex MemoryStorage::last_index() const { return ents_[0].index + (ents_.size() - 1); }

Result<std::vector<Entry>> MemoryStorage::entries(LogIndex lo, LogIndex hi,
                                                  uint64_t max_bytes) const {
  LogIndex offset = ents_[0].index;
  if (lo <= offset) return make_error(kErrCompacted, "raft storage: entries below first index");
  if (hi > last_index() + 1) {
    std::fprintf(stderr, "raft storage: entries hi=%llu beyond last=%llu\n",
                 static_cast<unsigned long long>(hi.get()),
                 static_cast<unsigned long long>(last_index().get()));
    std::abort();
  }
  std::vector<Entry> out;
  uint64_t size = 0;
  for (LogIndex i = lo; i < hi; ++i) {
    const Entry& e = ents_[i - offset];
    size += e.data.size() + 16;
    if (!out.empty() && size > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

Result<Term> MemoryStorage::term(LogIndex i) const {
  LogIndex offset = ents_[0].index;
  if (i < offset) return make_error(kErrCompacted, "raft storage: term below snapshot");
  if (i - offset >= ents_.size()) return make_error(kErrUnavailable, "raft storage: no entry");
  return ents_[i - offset].term;
}

Result<Snapshot> MemoryStorage::snapshot() const { return snapshot_; }

void MemoryStorage::append(const std::vector<Entry>& ents) {
  if (ents.empty()) return;
  LogIndex first = first_index();
  LogIndex last = ents.back().index;
  if (last < first) return;  // all compacted already
  size_t skip = first > ents[0].index ? static_cast<size_t>(first - ents[0].index) : 0;
  LogIndex start = ents[skip].index;
  if (start > last_index() + 1) {
    std::fprintf(stderr, "raft storage: append gap at %llu (last %llu)\n",
                 static_cast<unsigned long long>(start.get()),
                 static_cast<unsigned long long>(last_index().get()));
    std::abort();
  }
  ents_.resize(static_cast<size_t>(start - ents_[0].index));
  ents_.insert(ents_.end(), ents.begin() + static_cast<std::ptrdiff_t>(skip), ents.end());
}

Status MemoryStorage::apply_snapshot(Snapshot snap) {
  if (snap.meta.index <= snapshot_.meta.index && !snapshot_.empty()) {
    return make_error(kErrSnapshotOutOfDate, "raft storage: snapshot out of date");
  }
  ents_.assign(1, Entry{snap.meta.term, snap.meta.index, EntryType::kNormal, {}});
  conf_ = snap.meta.conf;
  snapshot_ = std::move(snap);
  return {};
}

Status MemoryStorage::create_snapshot(LogIndex i, ConfState conf, std::string data) {
  if (i <= snapshot_.meta.index) {
    return make_error(kErrSnapshotOutOfDate, "raft storage: snapshot out of date");
  }
  assert(i <= last_index());
  auto t = term(i);
  if (!t.ok()) return t.error();
  snapshot_.meta = SnapshotMeta{i, *t, std::move(conf)};
  snapshot_.data = std::move(data);
  return compact(i);
}

Status MemoryStorage::compact(LogIndex i) {
  LogIndex offset = ents_[0].index;
  if (i <= offset) return make_error(kErrCompacted, "raft storage: already compacted");
  assert(i <= last_index());
  size_t k = static_cast<size_t>(i - offset);
  Entry dummy{ents_[k].term, ents_[k].index, EntryType::kNormal, {}};
  ents_.erase(ents_.begin(), ents_.begin() + static_cast<std::ptrdiff_t>(k));
  ents_[0] = std::move(dummy);
  return {};
}

}  // namespace starling::raft
