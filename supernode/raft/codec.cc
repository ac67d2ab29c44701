#include "supernode/raft/codec.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>

namespace starling::raft {
namespace {

// Smallest encodings, to bound counts by the remaining bytes before reserving.
constexpr size_t kMinMessageBytes = 1 + 6 * 8 + 1 + 8 + 4 + 1 + 4;  // no entries, snapshot, context
constexpr size_t kMinEntryBytes = 8 + 8 + 1 + 4;
constexpr size_t kIdBytes = 8;
constexpr uint8_t kMaxMessageType = static_cast<uint8_t>(MessageType::kTimeoutNow);
constexpr uint8_t kMaxEntryType = static_cast<uint8_t>(EntryType::kConfChange);

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "raft codec: %s\n", what);
  std::abort();
}

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(size_t v) {
    if (v > std::numeric_limits<uint32_t>::max()) die("length or count does not fit in 32 bits");
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void str32(const std::string& s) {
    u32(s.size());
    out_.append(s);
  }
  void str64(const std::string& s) {
    u64(s.size());
    out_.append(s);
  }
  void ids(const std::vector<NodeId>& v) {
    u32(v.size());
    for (NodeId n : v) u64(n.get());
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads fields in order; the first failure records what was being read.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  size_t remaining() const { return in_.size() - pos_; }
  bool u8(uint8_t& v, const char* what) {
    if (!need(1, what)) return false;
    v = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }
  bool u32(uint32_t& v, const char* what) {
    if (!need(4, what)) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= static_cast<uint32_t>(static_cast<uint8_t>(in_[pos_++])) << (8 * i);
    }
    return true;
  }
  bool u64(uint64_t& v, const char* what) {
    if (!need(8, what)) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_++])) << (8 * i);
    }
    return true;
  }
  bool flag(bool& v, const char* what) {
    uint8_t b = 0;
    if (!u8(b, what)) return false;
    if (b > 1) return fail(std::string("bad ") + what + " flag " + std::to_string(b));
    v = b == 1;
    return true;
  }
  // A byte string whose length was already read.
  bool bytes(uint64_t n, std::string& out, const char* what) {
    if (n > remaining()) {
      return fail(std::string("truncated ") + what + " (length " + std::to_string(n) + ", " +
                  std::to_string(remaining()) + " bytes left)");
    }
    out.assign(in_.substr(pos_, static_cast<size_t>(n)));
    pos_ += static_cast<size_t>(n);
    return true;
  }
  bool str32(std::string& out, const char* what) {
    uint32_t n = 0;
    return u32(n, what) && bytes(n, out, what);
  }
  // A count of items of at least `min_bytes` each, checked against the remaining input.
  bool count(uint32_t& n, size_t min_bytes, const char* what) {
    if (!u32(n, what)) return false;
    if (static_cast<uint64_t>(n) * min_bytes > remaining()) {
      return fail(std::string(what) + " " + std::to_string(n) + " exceeds the remaining " +
                  std::to_string(remaining()) + " bytes");
    }
    return true;
  }
  bool ids(std::vector<NodeId>& out, const char* what) {
    uint32_t n = 0;
    if (!count(n, kIdBytes, what)) return false;
    out.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t v = 0;
      if (!u64(v, what)) return false;
      if (!out.empty() && v <= out.back().get()) {
        return fail(std::string(what) + " not strictly increasing");
      }
      out.emplace_back(v);
    }
    return true;
  }

  bool fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  bool need(size_t n, const char* what) {
    if (remaining() >= n) return true;
    return fail(std::string("truncated ") + what);
  }

  std::string_view in_;
  size_t pos_ = 0;
  std::string error_;
};

bool disjoint(const std::vector<NodeId>& a, const std::vector<NodeId>& b) {
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() && j < b.size()) {
    if (a[i] == b[j]) return false;
    if (a[i] < b[j]) {
      ++i;
    } else {
      ++j;
    }
  }
  return true;
}

void write_entry(Writer& w, const Entry& e) {
  w.u64(e.term.get());
  w.u64(e.index.get());
  w.u8(static_cast<uint8_t>(e.type));
  w.str32(e.data);
}

void write_snapshot(Writer& w, const Snapshot& s) {
  w.u64(s.meta.index.get());
  w.u64(s.meta.term.get());
  w.ids(s.meta.conf.voters);
  w.ids(s.meta.conf.learners);
  w.ids(s.meta.conf.removed);
  w.u32(s.meta.conf.addresses.size());
  for (const MemberAddress& a : s.meta.conf.addresses) {
    w.u64(a.node.get());
    w.str32(a.address);
  }
  w.str64(s.data);
}

bool read_entry(Reader& r, Entry& e, const std::string& at, std::string& where) {
  uint64_t term = 0;
  uint64_t index = 0;
  uint8_t type = 0;
  where = at;
  if (!r.u64(term, "entry term") || !r.u64(index, "entry index") || !r.u8(type, "entry type")) {
    return false;
  }
  if (type > kMaxEntryType) return r.fail("unknown entry type " + std::to_string(type));
  e.term = Term{term};
  e.index = LogIndex{index};
  e.type = static_cast<EntryType>(type);
  return r.str32(e.data, "entry data");
}

bool read_snapshot(Reader& r, Snapshot& s) {
  uint64_t index = 0;
  uint64_t term = 0;
  if (!r.u64(index, "snapshot index") || !r.u64(term, "snapshot term")) return false;
  s.meta.index = LogIndex{index};
  s.meta.term = Term{term};
  ConfState& c = s.meta.conf;
  if (!r.ids(c.voters, "snapshot voters") || !r.ids(c.learners, "snapshot learners") ||
      !r.ids(c.removed, "snapshot removed")) {
    return false;
  }
  if (!disjoint(c.voters, c.learners) || !disjoint(c.voters, c.removed) ||
      !disjoint(c.learners, c.removed)) {
    return r.fail("snapshot membership lists overlap");
  }
  uint32_t count = 0;
  if (!r.count(count, kIdBytes + 4, "snapshot addresses")) return false;
  c.addresses.resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t node = 0;
    MemberAddress& a = c.addresses[i];
    if (!r.u64(node, "snapshot address id") || !r.str32(a.address, "snapshot address")) {
      return false;
    }
    a.node = NodeId{node};
    if (i > 0 && node <= c.addresses[i - 1].node.get()) {
      return r.fail("snapshot addresses not strictly increasing");
    }
    if (a.address.size() > kMaxConfContext) return r.fail("snapshot address too long");
    if (!std::binary_search(c.voters.begin(), c.voters.end(), a.node) &&
        !std::binary_search(c.learners.begin(), c.learners.end(), a.node)) {
      return r.fail("snapshot address for a non-member");
    }
  }
  uint64_t n = 0;
  return r.u64(n, "snapshot data length") && r.bytes(n, s.data, "snapshot data");
}

// `where` names the part being read when an error occurs ("entry 4").
bool read_message(Reader& r, Message& m, std::string& where) {
  uint8_t type = 0;
  if (!r.u8(type, "type")) return false;
  if (type > kMaxMessageType) return r.fail("unknown type " + std::to_string(type));
  m.type = static_cast<MessageType>(type);
  uint64_t from = 0, to = 0, term = 0, log_term = 0, index = 0, commit = 0, hint = 0;
  if (!r.u64(from, "from") || !r.u64(to, "to") || !r.u64(term, "term") ||
      !r.u64(log_term, "log_term") || !r.u64(index, "index") || !r.u64(commit, "commit") ||
      !r.flag(m.reject, "reject") || !r.u64(hint, "reject_hint")) {
    return false;
  }
  m.from = NodeId{from};
  m.to = NodeId{to};
  m.term = Term{term};
  m.log_term = Term{log_term};
  m.index = LogIndex{index};
  m.commit = LogIndex{commit};
  m.reject_hint = LogIndex{hint};
  uint32_t n = 0;
  if (!r.count(n, kMinEntryBytes, "entry count")) return false;
  m.entries.resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    if (!read_entry(r, m.entries[i], "entry " + std::to_string(i), where)) return false;
  }
  where.clear();
  bool has_snapshot = false;
  if (!r.flag(has_snapshot, "snapshot")) return false;
  if (has_snapshot) {
    where = "snapshot";
    m.snapshot.emplace();
    if (!read_snapshot(r, *m.snapshot)) return false;
    where.clear();
  }
  return r.str32(m.context, "context");
}

}  // namespace

std::string encode_messages(const std::vector<Message>& batch) {
  Writer w;
  w.u8(kWireVersion);
  w.u32(batch.size());
  for (const Message& m : batch) {
    w.u8(static_cast<uint8_t>(m.type));
    w.u64(m.from.get());
    w.u64(m.to.get());
    w.u64(m.term.get());
    w.u64(m.log_term.get());
    w.u64(m.index.get());
    w.u64(m.commit.get());
    w.u8(m.reject ? 1 : 0);
    w.u64(m.reject_hint.get());
    w.u32(m.entries.size());
    for (const Entry& e : m.entries) write_entry(w, e);
    w.u8(m.snapshot ? 1 : 0);
    if (m.snapshot) write_snapshot(w, *m.snapshot);
    w.str32(m.context);
  }
  return w.take();
}

Result<std::vector<Message>> decode_messages(std::string_view bytes) {
  Reader r(bytes);
  auto bad = [](std::string what) { return make_error(kErrBadMessage, std::move(what)); };
  uint8_t version = 0;
  if (!r.u8(version, "version")) return bad("raft messages: empty");
  if (version != kWireVersion) {
    return bad("raft messages: unsupported version " + std::to_string(version));
  }
  uint32_t n = 0;
  if (!r.count(n, kMinMessageBytes, "message count")) return bad("raft messages: " + r.error());
  std::vector<Message> batch(n);
  for (uint32_t i = 0; i < n; ++i) {
    std::string where;
    if (!read_message(r, batch[i], where)) {
      std::string at = "raft message " + std::to_string(i);
      if (!where.empty()) at += " " + where;
      return bad(at + ": " + r.error());
    }
  }
  if (r.remaining() != 0) {
    return bad("raft messages: " + std::to_string(r.remaining()) + " trailing bytes");
  }
  return batch;
}

}  // namespace starling::raft
