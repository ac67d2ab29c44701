#include "supernode/tracker/snapshot_codec.h"

#include <cstring>
#include <limits>

namespace starling::tracker {

const char* task_state_name(TaskState state) {
  switch (state) {
    case TaskState::kFetching:
      return "fetching";
    case TaskState::kReady:
      return "ready";
    case TaskState::kFailed:
      return "failed";
  }
  return "unknown";
}

namespace {

constexpr char kMagic[] = "STRKSNAP";
constexpr size_t kMagicSize = 8;

Error bad(const std::string& why) {
  return make_error(kErrBadSnapshot, "tracker snapshot: " + why);
}

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i)));
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  void raw(std::string_view s) { out_.append(s); }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Reads from the front of `in_`; every method fails (returns false) instead of reading past
// the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u8(uint8_t& v) {
    if (in_.empty()) return false;
    v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool u32(uint32_t& v) {
    if (in_.size() < 4) return false;
    v = 0;
    for (size_t i = 0; i < 4; ++i)
      v |= static_cast<uint32_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(4);
    return true;
  }
  bool u64(uint64_t& v) {
    if (in_.size() < 8) return false;
    v = 0;
    for (size_t i = 0; i < 8; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(8);
    return true;
  }
  bool i64(int64_t& v) {
    uint64_t u;
    if (!u64(u)) return false;
    v = static_cast<int64_t>(u);
    return true;
  }
  bool flag(bool& v) {
    uint8_t b;
    if (!u8(b) || b > 1) return false;
    v = b == 1;
    return true;
  }
  bool str(std::string& v) {
    uint32_t n;
    if (!u32(n) || in_.size() < n) return false;
    v.assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool raw(size_t n, std::string_view& v) {
    if (in_.size() < n) return false;
    v = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

void write_task(Writer& w, const TaskRecord& t) {
  w.str(t.task_id.get());
  w.str(t.url);
  w.u8(t.digest ? 1 : 0);
  if (t.digest) w.str(*t.digest);
  w.i64(t.created_at);
  w.u8(static_cast<uint8_t>(t.state));
  w.str(t.seeder);
  w.i64(t.segment_size);
  w.u64(t.lease_epoch.get());
  w.u64(t.segments.size());
  for (const SegmentRecord& seg : t.segments) {
    w.i64(seg.index);
    w.i64(seg.offset);
    w.i64(seg.size);
    w.str(seg.metainfo);
  }
  w.i64(t.size);
  w.str(t.sha256);
  w.str(t.seed_ip);
  w.i64(t.seed_port);
  w.u8(t.error ? 1 : 0);
  if (t.error) {
    w.str(t.error->code);
    w.str(t.error->message);
  }
  w.u64(t.updated_index.get());
}

Result<TaskRecord> read_task(Reader& r, uint64_t applied) {
  TaskRecord t;
  std::string id;
  bool has_digest = false, has_error = false;
  uint8_t state = 0;
  uint64_t updated = 0;
  if (!r.str(id) || !r.str(t.url) || !r.flag(has_digest)) return bad("truncated task");
  if (has_digest) {
    std::string digest;
    if (!r.str(digest)) return bad("truncated task");
    t.digest = std::move(digest);
  }
  uint64_t epoch = 0, segment_count = 0;
  if (!r.i64(t.created_at) || !r.u8(state) || !r.str(t.seeder) || !r.i64(t.segment_size) ||
      !r.u64(epoch) || !r.u64(segment_count)) {
    return bad("truncated task");
  }
  // The count is not trusted for allocation: every segment consumes bytes.
  int64_t published = 0;
  for (uint64_t i = 0; i < segment_count; ++i) {
    SegmentRecord seg;
    if (!r.i64(seg.index) || !r.i64(seg.offset) || !r.i64(seg.size) || !r.str(seg.metainfo)) {
      return bad("truncated segment");
    }
    if (seg.index != static_cast<int64_t>(i) || seg.offset != published || seg.size < 1 ||
        seg.size > t.segment_size || seg.metainfo.empty() ||
        seg.metainfo.size() > kMaxSegmentMetainfoBytes ||
        (!t.segments.empty() && t.segments.back().size != t.segment_size)) {
      return bad("segment " + std::to_string(i) + " out of sequence or out of range");
    }
    published += seg.size;  // <= count * kMaxSegmentSize: bounded by the input length
    t.segments.push_back(std::move(seg));
  }
  if (!r.i64(t.size) || !r.str(t.sha256) || !r.str(t.seed_ip) || !r.i64(t.seed_port) ||
      !r.flag(has_error)) {
    return bad("truncated task");
  }
  if (has_error) {
    Error e;
    if (!r.str(e.code) || !r.str(e.message)) return bad("truncated task");
    t.error = std::move(e);
  }
  if (!r.u64(updated)) return bad("truncated task");

  if (!is_node_id(id)) return bad("task id is not 64 lowercase hex");
  t.task_id = TaskId(std::move(id));
  if (state > 2) return bad("task " + t.task_id.get() + ": unknown state");
  t.state = static_cast<TaskState>(state);
  if (!is_node_id(t.seeder)) return bad("task " + t.task_id.get() + ": seeder is not a node id");
  if (t.size < 0) return bad("task " + t.task_id.get() + ": negative size");
  if (t.segment_size < 1 || t.segment_size > kMaxSegmentSize) {
    return bad("task " + t.task_id.get() + ": segment_size out of range");
  }
  if (t.state == TaskState::kReady && t.size != published) {
    return bad("task " + t.task_id.get() + ": ready size is not the sum of its segments");
  }
  if (epoch == 0 || epoch > updated) {
    return bad("task " + t.task_id.get() + ": lease_epoch outside 1..updated_index");
  }
  t.lease_epoch = LogIndex(epoch);
  if (t.seed_port < 0 || t.seed_port > 65535) {
    return bad("task " + t.task_id.get() + ": seed_port out of range");
  }
  if (has_error != (t.state == TaskState::kFailed)) {
    return bad("task " + t.task_id.get() + ": error present iff failed");
  }
  if (updated == 0 || updated > applied) {
    return bad("task " + t.task_id.get() + ": updated_index outside 1..applied_index");
  }
  t.updated_index = LogIndex(updated);
  return t;
}

void write_certificate(Writer& w, const CertificateRecord& c) {
  w.str(c.node_id);
  w.str(c.role);
  w.i64(c.not_before);
  w.i64(c.not_after);
  w.u64(c.issued_index.get());
  w.u8(c.revocation ? 1 : 0);
  if (c.revocation) {
    w.i64(c.revocation->revoked_at);
    w.str(c.revocation->reason);
    w.u64(c.revocation->index.get());
  }
}

Result<CertificateRecord> read_certificate(Reader& r, uint64_t applied) {
  CertificateRecord c;
  uint64_t issued = 0;
  bool revoked = false;
  if (!r.str(c.node_id) || !r.str(c.role) || !r.i64(c.not_before) || !r.i64(c.not_after) ||
      !r.u64(issued) || !r.flag(revoked)) {
    return bad("truncated certificate");
  }
  if (revoked) {
    Revocation rev;
    uint64_t index = 0;
    if (!r.i64(rev.revoked_at) || !r.str(rev.reason) || !r.u64(index)) {
      return bad("truncated certificate");
    }
    rev.index = LogIndex(index);
    c.revocation = std::move(rev);
  }
  if (!is_node_id(c.node_id)) return bad("certificate node id is not 64 lowercase hex");
  const std::string what = "certificate " + c.node_id + ": ";
  c.issued_index = LogIndex(issued);
  if (issued == 0) {
    if (!c.role.empty() || c.not_before != 0 || c.not_after != 0) {
      return bad(what + "role or validity without an issuance");
    }
    if (!c.revocation) return bad(what + "neither issued nor revoked");
  } else {
    if (!is_certificate_role(c.role)) return bad(what + "unknown role");
    if (c.not_before < 0 || c.not_after <= c.not_before) {
      return bad(what + "validity is not 0 <= not_before < not_after");
    }
    if (issued > applied) return bad(what + "issued_index above applied_index");
  }
  if (c.revocation) {
    const Revocation& rev = *c.revocation;
    if (rev.revoked_at < 0) return bad(what + "negative revoked_at");
    if (Status st = validate_revoke_reason(rev.reason); !st.ok()) {
      return bad(what + st.error().message);
    }
    if (rev.index.get() == 0 || rev.index.get() > applied) {
      return bad(what + "revocation index outside 1..applied_index");
    }
    if (issued >= rev.index.get()) return bad(what + "issued after its revocation");
  }
  return c;
}

}  // namespace

std::string encode_snapshot(const SnapshotData& data) {
  Writer w;
  w.raw(std::string_view(kMagic, kMagicSize));
  w.u32(kSnapshotVersion);
  w.u64(data.applied_index.get());
  w.u64(data.tasks.size());
  for (const TaskRecord& t : data.tasks) write_task(w, t);
  w.u64(data.kv.size());
  for (const KvRecord& kv : data.kv) {
    w.str(kv.key);
    w.str(kv.value);
    w.u64(kv.create_index);
    w.u64(kv.modify_index);
  }
  w.u64(data.certificates.size());
  for (const CertificateRecord& c : data.certificates) write_certificate(w, c);
  w.u64(data.results.size());
  for (const ResultRecord& res : data.results) {
    w.str(res.client_id);
    w.u64(res.seq);
    w.u64(res.index.get());
    w.u8(res.error ? 0 : 1);
    if (res.error) {
      w.str(res.error->code);
      w.str(res.error->message);
    } else {
      w.str(res.result);
      w.str("");
    }
  }
  return w.take();
}

Result<SnapshotData> decode_snapshot(std::string_view bytes) {
  Reader r(bytes);
  std::string_view magic;
  if (!r.raw(kMagicSize, magic) || magic != std::string_view(kMagic, kMagicSize)) {
    return bad("not a tracker snapshot (bad magic)");
  }
  uint32_t version = 0;
  if (!r.u32(version)) return bad("truncated header");
  if (version != kSnapshotVersion) return bad("unsupported version " + std::to_string(version));
  SnapshotData data;
  uint64_t applied = 0, count = 0;
  if (!r.u64(applied)) return bad("truncated header");
  data.applied_index = LogIndex(applied);

  // Counts are not trusted for allocation: every record consumes bytes, so a count larger
  // than the input fails at the first short read.
  if (!r.u64(count)) return bad("truncated task count");
  for (uint64_t i = 0; i < count; ++i) {
    auto t = read_task(r, applied);
    if (!t.ok()) return t.error();
    if (!data.tasks.empty() && !(data.tasks.back().task_id < t->task_id)) {
      return bad("tasks not in strictly increasing id order");
    }
    data.tasks.push_back(std::move(*t));
  }

  if (!r.u64(count)) return bad("truncated kv count");
  for (uint64_t i = 0; i < count; ++i) {
    KvRecord kv;
    if (!r.str(kv.key) || !r.str(kv.value) || !r.u64(kv.create_index) || !r.u64(kv.modify_index)) {
      return bad("truncated kv entry");
    }
    if (Status st = validate_kv_key(kv.key); !st.ok()) return bad(st.error().message);
    if (kv.value.size() > kMaxKvValueBytes) return bad("kv value too large");
    if (kv.create_index == 0 || kv.create_index > kv.modify_index || kv.modify_index > applied) {
      return bad("kv key '" + kv.key + "': indexes outside 1 <= create <= modify <= applied");
    }
    if (!data.kv.empty() && !(data.kv.back().key < kv.key)) {
      return bad("kv keys not in strictly increasing order");
    }
    data.kv.push_back(std::move(kv));
  }

  if (!r.u64(count)) return bad("truncated certificate count");
  for (uint64_t i = 0; i < count; ++i) {
    auto c = read_certificate(r, applied);
    if (!c.ok()) return c.error();
    if (!data.certificates.empty() && !(data.certificates.back().node_id < c->node_id)) {
      return bad("certificates not in strictly increasing node id order");
    }
    data.certificates.push_back(std::move(*c));
  }

  if (!r.u64(count)) return bad("truncated result count");
  for (uint64_t i = 0; i < count; ++i) {
    ResultRecord res;
    uint64_t index = 0;
    bool ok = false;
    std::string first, second;
    if (!r.str(res.client_id) || !r.u64(res.seq) || !r.u64(index) || !r.flag(ok) || !r.str(first) ||
        !r.str(second)) {
      return bad("truncated result record");
    }
    if (!is_client_id(res.client_id)) return bad("result: bad client id");
    if (index == 0 || index > applied) return bad("result: index outside 1..applied_index");
    res.index = LogIndex(index);
    if (ok) {
      if (!second.empty()) return bad("result: message on a success");
      res.result = std::move(first);
    } else {
      if (first.empty()) return bad("result: empty error code");
      res.error = make_error(std::move(first), std::move(second));
    }
    if (!data.results.empty()) {
      const ResultRecord& prev = data.results.back();
      if (!(prev.client_id < res.client_id ||
            (prev.client_id == res.client_id && prev.seq < res.seq))) {
        return bad("results not in strictly increasing (client_id, seq) order");
      }
    }
    data.results.push_back(std::move(res));
  }
  if (!r.done()) return bad("trailing bytes");
  return data;
}

}  // namespace starling::tracker
