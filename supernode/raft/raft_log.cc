#include "supernode/raft/raft_log.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace starling::raft {
namespace {

[[noreturn]] void fatal(const std::string& what) {
  std::fprintf(stderr, "raft log: %s\n", what.c_str());
  std::abort();
}

std::string idx(LogIndex i) { return std::to_string(i.get()); }

}  // namespace

RaftLog::RaftLog(const Storage& storage) : storage_(storage) {
  offset_ = storage.last_index() + 1;
  committed_ = storage.first_index() - 1;
  applied_ = storage.first_index() - 1;
}

LogIndex RaftLog::first_index() const {
  if (unstable_snap_) return unstable_snap_->meta.index + 1;
  return storage_.first_index();
}

LogIndex RaftLog::last_index() const {
  if (!unstable_.empty()) return offset_ + (unstable_.size() - 1);
  if (unstable_snap_) return unstable_snap_->meta.index;
  return storage_.last_index();
}

Result<Term> RaftLog::term(LogIndex i) const {
  LogIndex dummy = first_index() - 1;
  if (i < dummy) return make_error(kErrCompacted, "raft log idx=" + idx(i) + ": compacted");
  if (i > last_index()) {
    return make_error(kErrUnavailable, "raft log idx=" + idx(i) + ": beyond last");
  }
  if (unstable_snap_ && i == unstable_snap_->meta.index) return unstable_snap_->meta.term;
  if (!unstable_.empty() && i >= offset_) return unstable_[i - offset_].term;
  if (unstable_snap_) return make_error(kErrCompacted, "raft log idx=" + idx(i) + ": compacted");
  return storage_.term(i);
}

Term RaftLog::term_or_zero(LogIndex i) const {
  auto t = term(i);
  return t.ok() ? *t : Term{0};
}

bool RaftLog::match_term(LogIndex i, Term t) const {
  auto got = term(i);
  return got.ok() && *got == t;
}

bool RaftLog::is_up_to_date(LogIndex last_index_arg, Term last_term_arg) const {
  Term mine = last_term();
  return last_term_arg > mine || (last_term_arg == mine && last_index_arg >= last_index());
}

std::optional<LogIndex> RaftLog::maybe_append(LogIndex index, Term log_term, LogIndex committed,
                                              const std::vector<Entry>& ents) {
  if (!match_term(index, log_term)) return std::nullopt;
  LogIndex last_new = index + ents.size();
  // The first entry that is new or conflicts with ours (log matching: everything before it
  // is identical).
  size_t k = 0;
  while (k < ents.size() && match_term(ents[k].index, ents[k].term)) ++k;
  if (k < ents.size()) {
    if (ents[k].index <= committed_) {
      fatal("entry " + idx(ents[k].index) + " conflicts with committed " + idx(committed_));
    }
    append(std::vector<Entry>(ents.begin() + static_cast<std::ptrdiff_t>(k), ents.end()));
  }
  commit_to(std::min(committed, last_new));
  return last_new;
}

LogIndex RaftLog::append(const std::vector<Entry>& ents) {
  if (ents.empty()) return last_index();
  if (ents[0].index <= committed_) {
    fatal("append at " + idx(ents[0].index) + " below committed " + idx(committed_));
  }
  truncate_and_append(ents);
  return last_index();
}

void RaftLog::truncate_and_append(const std::vector<Entry>& ents) {
  LogIndex after = ents[0].index;
  if (after == offset_ + unstable_.size()) {
    unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  } else if (after <= offset_) {
    // Replaces the unstable tail and part of the stable log; the driver's append overwrites
    // the stable part.
    offset_ = after;
    unstable_ = ents;
  } else {
    unstable_.resize(static_cast<size_t>(after - offset_));
    unstable_.insert(unstable_.end(), ents.begin(), ents.end());
  }
}

LogIndex RaftLog::find_conflict_by_term(LogIndex index, Term t) const {
  for (LogIndex i = index;; i = i - 1) {
    auto got = term(i);
    if (!got.ok()) return i;  // compacted: the best we know
    if (*got <= t) return i;
    if (i == LogIndex{0}) return i;
  }
}

Result<std::vector<Entry>> RaftLog::slice(LogIndex lo, LogIndex hi, uint64_t max_bytes) const {
  if (lo < first_index()) return make_error(kErrCompacted, "raft log idx=" + idx(lo));
  if (hi > last_index() + 1) fatal("slice beyond last index");
  std::vector<Entry> out;
  if (lo >= hi) return out;
  if (lo < offset_) {
    auto stored = storage_.entries(lo, std::min(hi, offset_), max_bytes);
    if (!stored.ok()) return stored.error();
    out = std::move(*stored);
    if (LogIndex(lo.get() + out.size()) < std::min(hi, offset_)) return out;  // size limit
  }
  uint64_t size = 0;
  for (const Entry& e : out) size += e.data.size() + 16;
  for (LogIndex i = std::max(lo, offset_); i < hi; ++i) {
    const Entry& e = unstable_[i - offset_];
    size += e.data.size() + 16;
    if (!out.empty() && size > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

Result<std::vector<Entry>> RaftLog::entries(LogIndex lo, uint64_t max_bytes) const {
  if (lo > last_index()) return std::vector<Entry>{};
  return slice(lo, last_index() + 1, max_bytes);
}

Result<Snapshot> RaftLog::snapshot() const {
  if (unstable_snap_) return *unstable_snap_;
  return storage_.snapshot();
}

void RaftLog::commit_to(LogIndex i) {
  if (i <= committed_) return;
  if (i > last_index()) fatal("commit " + idx(i) + " beyond last " + idx(last_index()));
  committed_ = i;
}

void RaftLog::applied_to(LogIndex i) {
  if (i == LogIndex{0}) return;
  if (i > committed_ || i < applied_) fatal("applied " + idx(i) + " out of range");
  applied_ = i;
}

std::vector<Entry> RaftLog::next_committed_entries() const {
  if (unstable_snap_ || !has_next_committed_entries()) return {};
  auto got = slice(std::max(applied_ + 1, first_index()), committed_ + 1, kNoLimit);
  if (!got.ok()) fatal("unapplied committed entries compacted: " + got.error().message);
  return std::move(*got);
}

bool RaftLog::has_next_committed_entries() const {
  if (unstable_snap_) return false;
  return committed_ + 1 > std::max(applied_ + 1, first_index());
}

LogIndex RaftLog::stable_last_index() const {
  if (unstable_snap_) return LogIndex{0};
  if (unstable_.empty()) return storage_.last_index();
  return std::min(storage_.last_index(), offset_ - 1);
}

void RaftLog::stable_to(LogIndex i, Term t) {
  if (unstable_.empty() || i < offset_) return;
  if (i - offset_ >= unstable_.size()) return;
  if (unstable_[i - offset_].term != t) return;  // replaced meanwhile; keep it unstable
  unstable_.erase(unstable_.begin(),
                  unstable_.begin() + static_cast<std::ptrdiff_t>(i - offset_ + 1));
  offset_ = i + 1;
}

void RaftLog::stable_snap_to(LogIndex i) {
  if (unstable_snap_ && unstable_snap_->meta.index == i) unstable_snap_.reset();
}

void RaftLog::restore(Snapshot snap) {
  committed_ = snap.meta.index;
  offset_ = snap.meta.index + 1;
  unstable_.clear();
  unstable_snap_ = std::move(snap);
}

}  // namespace starling::raft
