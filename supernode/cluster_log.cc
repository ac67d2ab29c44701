#include "supernode/cluster_log.h"

#include <sodium.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/hex.h"
#include "crypto/base64.h"
#include "mesh/rpc.h"
#include "supernode/raft/codec.h"
#include "supernode/raft/driver.h"
#include "supernode/raft_transport.h"

namespace starling::supernode {

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// How long the leader waits for a forwarded proposal or read before the follower retries.
constexpr auto kForwardedWait = 5s;

// Feeds committed entries to the tracker. Runs on the driver's strand.
class TrackerApplication final : public raft::Application {
 public:
  explicit TrackerApplication(tracker::TrackerStateMachine& tracker) : tracker_(tracker) {}

  Result<std::string> apply(raft::LogIndex index, const std::string& data) override {
    auto proposal = tracker::decode_proposal(data);
    if (!proposal.ok()) {
      // Only supernodes propose, so this is a bug or a newer version; every replica rejects
      // it the same way and the log moves on.
      std::fprintf(stderr, "supernode: raft entry %llu is not a tracker proposal: %s\n",
                   static_cast<unsigned long long>(index.get()), proposal.error().message.c_str());
      return proposal.error();
    }
    auto result = tracker_.apply(tracker::LogIndex{index.get()}, *proposal);
    if (!result.ok() && result.error().code == tracker::kErrStorage) {
      return make_error(raft::kErrApplyFailed, result.error().message);
    }
    return result;
  }
  // A Ready's committed entries in one tracker transaction (one sync, not one per entry).
  Result<std::vector<Result<std::string>>> apply_batch(
      const std::vector<const raft::Entry*>& entries) override {
    std::vector<Result<tracker::Proposal>> proposals;
    proposals.reserve(entries.size());
    std::vector<tracker::TrackerStateMachine::BatchEntry> batch;
    for (const raft::Entry* e : entries) {
      proposals.push_back(tracker::decode_proposal(e->data));
      if (!proposals.back().ok()) {
        std::fprintf(stderr, "supernode: raft entry %llu is not a tracker proposal: %s\n",
                     static_cast<unsigned long long>(e->index.get()),
                     proposals.back().error().message.c_str());
        continue;
      }
      batch.push_back({tracker::LogIndex{e->index.get()}, &*proposals.back()});
    }
    auto applied = tracker_.apply_batch(batch);
    if (!applied.ok()) return make_error(raft::kErrApplyFailed, applied.error().message);
    std::vector<Result<std::string>> out;
    out.reserve(entries.size());
    size_t next = 0;
    for (auto& p : proposals) {
      if (!p.ok()) {
        out.push_back(p.error());
      } else {
        out.push_back(std::move((*applied)[next++]));
      }
    }
    return out;
  }
  raft::LogIndex applied_index() const override {
    return raft::LogIndex{tracker_.applied_index().get()};
  }
  Result<std::string> snapshot() override { return tracker_.snapshot(); }
  std::function<Result<IndexedSnapshot>()> concurrent_snapshot() override {
    auto read = tracker_.concurrent_snapshot();
    if (!read) return nullptr;
    return [read = std::move(read)]() -> Result<IndexedSnapshot> {
      auto got = read();
      if (!got.ok()) return got.error();
      return IndexedSnapshot{raft::LogIndex{got->index.get()}, std::move(got->data)};
    };
  }
  Status restore(raft::LogIndex index, const std::string& data) override {
    return tracker_.restore(tracker::LogIndex{index.get()}, data);
  }

 private:
  tracker::TrackerStateMachine& tracker_;
};

bool is_transport_error(const Error& e) { return e.code.rfind("mesh.", 0) == 0; }

// Errors after which the same proposal or read may be tried again (on the new leader).
bool retryable(const Error& e) {
  return is_transport_error(e) || e.code == raft::kErrNotLeader ||
         e.code == raft::kErrProposalLost || e.code == raft::kErrProposalDropped ||
         e.code == raft::kErrNotReady || e.code == raft::kErrTimeout ||
         e.code == raft::kErrStopped || e.code == kErrUnavailable;
}

std::string random_client_id() {
  uint8_t bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  return to_hex(bytes, sizeof bytes);
}

}  // namespace

// Sessions to other members for forwarded calls. A session carries one call at a time, so
// idle sessions are pooled and concurrent forwards each get their own.
class MemberSessions {
 public:
  explicit MemberSessions(mesh::MeshConfig mesh) : mesh_(std::move(mesh)) {}

  Result<json> call(const Member& member, const std::string& method, const json& params,
                    std::chrono::milliseconds timeout) {
    std::unique_ptr<mesh::RpcClient> client;
    {
      std::lock_guard lock(mu_);
      auto& idle = idle_[member.id.get()];
      if (!idle.empty()) {
        client = std::move(idle.back());
        idle.pop_back();
      }
    }
    if (!client) {
      auto dialed = mesh::RpcClient::connect(member.host, member.port, mesh_, 1s);
      if (!dialed.ok()) return dialed.error();
      client = std::move(dialed).value();
    }
    auto result = client->call(method, params, timeout);
    if (result.ok() || !is_transport_error(result.error())) {
      std::lock_guard lock(mu_);
      idle_[member.id.get()].push_back(std::move(client));
    }
    return result;
  }

  // Drops the idle sessions to members no longer in `members` (removed ones).
  void retain(const std::vector<Member>& members) {
    std::lock_guard lock(mu_);
    std::erase_if(idle_, [&](const auto& kv) {
      return !find_member(members, raft::NodeId{kv.first}).has_value();
    });
  }

 private:
  const mesh::MeshConfig mesh_;
  std::mutex mu_;
  std::map<uint64_t, std::vector<std::unique_ptr<mesh::RpcClient>>> idle_;  // guarded by mu_
};

struct ClusterLog::Parts {
  ClusterConfig config;
  std::unique_ptr<TrackerApplication> app;
  std::unique_ptr<MeshRaftTransport> transport;
  std::unique_ptr<raft::Driver> driver;
  std::unique_ptr<MemberSessions> sessions;
  const std::string client_id = random_client_id();
  std::atomic<uint64_t> next_seq{1};
  std::atomic<bool> stopped{false};
  mutable std::mutex members_mu;
  std::vector<Member> members;  // guarded by members_mu: who we can reach, by id

  std::vector<Member> current_members() const {
    std::lock_guard lock(members_mu);
    return members;
  }
  std::optional<Member> member(raft::NodeId id) const {
    std::lock_guard lock(members_mu);
    return find_member(members, id);
  }

  // On the driver's thread, whenever the applied membership changed (and once at start).
  void on_conf_change(const raft::ConfState& conf) {
    // No membership yet: a joining member talks to the members it was given until the
    // leader's snapshot brings the real one.
    std::vector<Member> now = conf.voters.empty() && conf.learners.empty()
                                  ? config.members
                                  : members_of(conf, config.members);
    {
      std::lock_guard lock(members_mu);
      if (now == members) return;
      members = now;
    }
    std::string text;
    for (const auto& m : now) {
      const bool voter = std::binary_search(conf.voters.begin(), conf.voters.end(), m.id);
      const bool learner = std::binary_search(conf.learners.begin(), conf.learners.end(), m.id);
      text += (text.empty() ? "" : ", ") + std::to_string(m.id.get()) + "=" + m.address() +
              (voter     ? ""
               : learner ? " (learner)"
                         : " (joining)");
    }
    std::fprintf(stderr, "supernode: raft members: %s\n", text.empty() ? "none" : text.c_str());
    transport->set_members(now);
    if (sessions) sessions->retain(now);
  }
};

ClusterLog::ClusterLog(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}

ClusterLog::~ClusterLog() { stop(); }

void ClusterLog::stop() {
  if (parts_->stopped.exchange(true)) return;
  parts_->driver->stop();
  parts_->transport->stop();
}

Result<std::unique_ptr<ClusterLog>> ClusterLog::start(ClusterConfig config,
                                                      tracker::TrackerStateMachine& tracker) {
  if (!config.join && !find_member(config.members, config.id)) {
    return make_error(kErrBadMembers,
                      "--id " + std::to_string(config.id.get()) + " is not one of the --members");
  }
  if (config.join && find_member(config.members, config.id)) {
    return make_error(kErrBadMembers, "--id " + std::to_string(config.id.get()) +
                                          " is one of the --join members; --join lists the "
                                          "members already running");
  }
  auto parts = std::make_unique<Parts>();
  parts->config = std::move(config);
  const ClusterConfig& c = parts->config;
  parts->app = std::make_unique<TrackerApplication>(tracker);
  // No links yet: the first on_conf_change (from Driver::start) sets them.
  parts->transport = std::make_unique<MeshRaftTransport>(std::vector<Member>{}, c.id, c.mesh);
  parts->sessions = std::make_unique<MemberSessions>(c.mesh);

  raft::DriverConfig dc;
  dc.raft.id = c.id;
  dc.raft.election_tick = c.election_tick;
  dc.raft.heartbeat_tick = c.heartbeat_tick;
  dc.raft.seed = std::random_device{}();
  dc.storage_path = c.raft_path;
  // A new store of an initial member records the initial membership with its addresses; a
  // joining member's stays empty until the leader's snapshot (raft/README.md "Membership").
  if (!c.join) dc.bootstrap = bootstrap_conf(c.members);
  dc.on_conf_change = [p = parts.get()](const raft::ConfState& conf) { p->on_conf_change(conf); };
  dc.tick = c.tick;
  dc.snapshot_entries = c.snapshot_entries;
  auto driver = raft::Driver::start(std::move(dc), *parts->transport, *parts->app);
  if (!driver.ok()) {
    parts->transport->stop();
    return driver.error();
  }
  parts->driver = std::move(driver).value();
  parts->transport->set_driver(parts->driver.get());
  return std::unique_ptr<ClusterLog>(new ClusterLog(std::move(parts)));
}

Result<std::string> ClusterLog::propose(const tracker::Command& command,
                                        std::chrono::milliseconds timeout) {
  const tracker::Proposal proposal{parts_->client_id, parts_->next_seq.fetch_add(1), command};
  const std::string data = tracker::encode_proposal(proposal);
  const auto deadline = Clock::now() + timeout;
  auto pause = 20ms;
  Error last = make_error(kErrUnavailable, "no leader elected yet");
  while (!parts_->stopped) {
    const raft::DriverInfo info = parts_->driver->info();
    Result<std::string> result = last;
    if (info.role == raft::Role::kLeader) {
      result = parts_->driver->propose(data, kForwardedWait);
    } else if (auto leader = parts_->member(info.lead)) {
      auto answer = parts_->sessions->call(
          *leader, "Propose", {{"proposal", crypto::base64_encode(data)}}, kForwardedWait + 1s);
      if (answer.ok()) {
        auto it = answer->find("result");
        result = it != answer->end() && it->is_string()
                     ? Result<std::string>(it->get<std::string>())
                     : Result<std::string>(make_error(mesh::kErrBadMessage,
                                                      "leader answered Propose without a result"));
      } else {
        result = answer.error();
      }
    }
    if (result.ok() || !retryable(result.error())) return result;
    last = result.error();
    if (Clock::now() + pause >= deadline) break;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, 200ms);
  }
  if (parts_->stopped) return make_error(raft::kErrStopped, "the supernode is stopping");
  return make_error(
      kErrUnavailable,
      "no quorum: the write was not committed within " + std::to_string(timeout.count()) +
          " ms (writes need a majority of the supernodes; last error: " + last.message + ")");
}

Status ClusterLog::read_barrier(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = 20ms;
  Error last = make_error(kErrUnavailable, "no leader elected yet");
  while (!parts_->stopped) {
    const raft::DriverInfo info = parts_->driver->info();
    Status status = last;
    if (info.role == raft::Role::kLeader) {
      auto index = parts_->driver->read_index(kForwardedWait);
      status = index.ok() ? Status() : Status(index.error());
    } else if (auto leader = parts_->member(info.lead)) {
      auto answer = parts_->sessions->call(*leader, "ReadIndex", json::object(), kForwardedWait);
      if (answer.ok()) {
        auto it = answer->find("index");
        if (it != answer->end() && it->is_number_unsigned()) {
          const auto remaining =
              std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
          status = parts_->driver->wait_applied(raft::LogIndex{it->get<uint64_t>()},
                                                std::max(remaining, 1ms));
        } else {
          status = make_error(mesh::kErrBadMessage, "leader answered ReadIndex without an index");
        }
      } else {
        status = answer.error();
      }
    }
    if (status.ok() || !retryable(status.error())) return status;
    last = status.error();
    if (Clock::now() + pause >= deadline) break;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, 200ms);
  }
  if (parts_->stopped) return make_error(raft::kErrStopped, "the supernode is stopping");
  return make_error(kErrUnavailable,
                    "no quorum: consistent reads need a majority of the supernodes (last error: " +
                        last.message + "); stale reads are served by any member");
}

namespace {

// A refusal from the Raft core, in the operator's words.
Error member_change_error(const raft::ConfChange& cc, const Error& e) {
  if (e.code == kErrBadMemberChange || e.code == kErrMemberChangeInFlight) return e;
  const std::string id = std::to_string(cc.node.get());
  const std::string what = cc.type == raft::ConfChangeType::kRemove ? "cannot remove member " + id
                                                                    : "cannot add member " + id;
  if (e.code == raft::kErrConfChangeInFlight) {
    return make_error(kErrMemberChangeInFlight,
                      what +
                          ": another membership change is in flight (a new member is "
                          "promoted once it caught up); try again");
  }
  if (e.code != raft::kErrBadConfChange) return e;
  const auto has = [&](const char* s) { return e.message.find(s) != std::string::npos; };
  std::string why = e.message;
  if (has("already a member")) {
    why = "id " + id + " is already in use";
  } else if (has("was removed")) {
    why = "id " + id + " belonged to a removed member (ids are never reused)";
  } else if (has("not a member")) {
    why = "it is not a member";
  } else if (has("last voter")) {
    why = "it is the last voter";
  }
  return make_error(kErrBadMemberChange, what + ": " + why);
}

raft::ConfChange add_change(const Member& m) {
  return raft::ConfChange{raft::ConfChangeType::kAddLearner, m.id, m.address()};
}

}  // namespace

Status ClusterLog::add_member(const Member& member, std::chrono::milliseconds timeout) {
  return change_membership(add_change(member), timeout);
}

Status ClusterLog::remove_member(raft::NodeId id, std::chrono::milliseconds timeout) {
  return change_membership(raft::ConfChange{raft::ConfChangeType::kRemove, id, {}}, timeout);
}

std::vector<Member> ClusterLog::members() const { return parts_->current_members(); }

// Like propose(): on the leader directly, else forwarded ("ChangeMembership"), retried on
// leader changes. A change whose first attempt had an unknown outcome (timeout, lost session)
// and that the leader then calls done already (id present / already removed) succeeded.
Status ClusterLog::change_membership(const raft::ConfChange& cc,
                                     std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = 20ms;
  Error last = make_error(kErrUnavailable, "no leader elected yet");
  bool uncertain = false;
  while (!parts_->stopped) {
    const raft::DriverInfo info = parts_->driver->info();
    Status status = last;
    if (info.role == raft::Role::kLeader) {
      status = parts_->driver->change_membership(cc, kForwardedWait);
    } else if (auto leader = parts_->member(info.lead)) {
      json params = {{"change", cc.type == raft::ConfChangeType::kRemove ? "remove" : "add"},
                     {"id", cc.node.get()}};
      if (!cc.context.empty()) params["address"] = cc.context;
      auto answer =
          parts_->sessions->call(*leader, "ChangeMembership", params, kForwardedWait + 1s);
      status = answer.ok() ? Status() : Status(answer.error());
    }
    if (status.ok()) return status;
    Error e = member_change_error(cc, status.error());
    if (e.code == kErrBadMemberChange) {
      const bool done = cc.type == raft::ConfChangeType::kRemove
                            ? e.message.find("not a member") != std::string::npos
                            : e.message.find("already in use") != std::string::npos;
      if (uncertain && done) return {};
      return e;
    }
    if (e.code != kErrMemberChangeInFlight && !retryable(e)) return e;
    if (e.code == raft::kErrTimeout || e.code == raft::kErrProposalLost || is_transport_error(e)) {
      uncertain = true;
    }
    last = e;
    if (Clock::now() + pause >= deadline) break;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, 200ms);
  }
  if (parts_->stopped) return make_error(raft::kErrStopped, "the supernode is stopping");
  if (last.code == kErrMemberChangeInFlight) return last;
  return make_error(kErrUnavailable,
                    "no quorum: the membership change was not committed within " +
                        std::to_string(timeout.count()) +
                        " ms (it needs a majority of the supernodes; last error: " + last.message +
                        ")");
}

std::optional<Result<json>> ClusterLog::handle(const std::string& method, const json& params) {
  if (method == "ChangeMembership") {
    auto change = params.find("change");
    auto id = params.find("id");
    if (change == params.end() || !change->is_string() || id == params.end() ||
        !id->is_number_unsigned() || id->get<uint64_t>() == 0) {
      return Result<json>(
          make_error(mesh::kErrBadMessage, "bad request: \"change\" and \"id\" required"));
    }
    const raft::NodeId node{id->get<uint64_t>()};
    raft::ConfChange cc{raft::ConfChangeType::kRemove, node, {}};
    if (*change == "add") {
      auto address = params.find("address");
      if (address == params.end() || !address->is_string()) {
        return Result<json>(make_error(mesh::kErrBadMessage, "bad request: \"address\" missing"));
      }
      auto m = parse_member(std::to_string(node.get()) + "=" + address->get<std::string>());
      if (!m.ok()) return Result<json>(make_error(mesh::kErrBadMessage, m.error().message));
      cc = add_change(*m);
    } else if (*change != "remove") {
      return Result<json>(
          make_error(mesh::kErrBadMessage, "bad request: \"change\" must be add or remove"));
    }
    // Only the leader changes the membership; a member that lost leadership meanwhile
    // answers not_leader and the forwarding member retries on the new one.
    Status st = parts_->driver->change_membership(cc, kForwardedWait);
    if (!st.ok()) return Result<json>(member_change_error(cc, st.error()));
    return Result<json>(json::object());
  }
  if (method == "Raft") {
    auto it = params.find("batch");
    if (it == params.end() || !it->is_string()) {
      return Result<json>(make_error(mesh::kErrBadMessage, "bad request: \"batch\" missing"));
    }
    auto bytes = crypto::base64_decode(it->get<std::string>());
    if (!bytes) {
      return Result<json>(make_error(mesh::kErrBadMessage, "bad request: batch is not base64"));
    }
    auto batch = raft::decode_messages(*bytes);
    if (!batch.ok()) return Result<json>(batch.error());
    parts_->driver->receive(std::move(batch).value());
    return Result<json>(json::object());
  }
  if (method == "Propose") {
    auto it = params.find("proposal");
    if (it == params.end() || !it->is_string()) {
      return Result<json>(make_error(mesh::kErrBadMessage, "bad request: \"proposal\" missing"));
    }
    auto bytes = crypto::base64_decode(it->get<std::string>());
    if (!bytes || !tracker::decode_proposal(*bytes).ok()) {
      return Result<json>(
          make_error(mesh::kErrBadMessage, "bad request: \"proposal\" is not a tracker proposal"));
    }
    // Only the leader proposes; a member that lost leadership meanwhile answers not_leader
    // and the forwarding member retries on the new one.
    auto result = parts_->driver->propose(*bytes, kForwardedWait);
    if (!result.ok()) return Result<json>(result.error());
    return Result<json>(json{{"result", *result}});
  }
  if (method == "ReadIndex") {
    auto index = parts_->driver->read_index(kForwardedWait);
    if (!index.ok()) return Result<json>(index.error());
    return Result<json>(json{{"index", index->get()}});
  }
  return std::nullopt;
}

json ClusterLog::status() const {
  const raft::DriverInfo info = parts_->driver->info();
  json members = json::array();
  std::vector<Member> known = members_of(info.conf, parts_->config.members);
  if (known.empty()) known = parts_->current_members();  // joining: no membership yet
  auto add = [&](raft::NodeId id, bool voter) {
    auto m = find_member(known, id);
    members.push_back(
        {{"id", id.get()}, {"address", m ? m->address() : std::string("?")}, {"voter", voter}});
  };
  for (auto id : info.conf.voters) add(id, true);
  for (auto id : info.conf.learners) add(id, false);
  return json{{"id", info.id.get()},
              {"state", raft::role_name(info.role)},
              {"lead", info.lead.get()},
              {"term", info.term.get()},
              {"commit", info.commit.get()},
              {"applied", info.applied.get()},
              {"last_index", info.last_index.get()},
              {"snapshot_index", info.snapshot_index.get()},
              {"members", std::move(members)}};
}

}  // namespace starling::supernode
