#include "supernode/raft_transport.h"

#include <chrono>
#include <cstdio>

#include "crypto/base64.h"
#include "mesh/rpc.h"
#include "supernode/raft/codec.h"

namespace starling::supernode {

using namespace std::chrono_literals;

MeshRaftTransport::MeshRaftTransport(const std::vector<Member>& members, raft::NodeId self,
                                     mesh::MeshConfig mesh)
    : self_(self), mesh_(std::move(mesh)) {
  set_members(members);
}

MeshRaftTransport::~MeshRaftTransport() { stop(); }

void MeshRaftTransport::set_members(const std::vector<Member>& members) {
  std::lock_guard lock(links_mu_);
  if (stopping_) return;
  auto listed = [&](const Member& m) {
    for (const auto& n : members) {
      if (n == m) return true;
    }
    return false;
  };
  for (auto it = links_.begin(); it != links_.end();) {
    Link& l = **it;
    if (listed(l.member)) {
      ++it;
      continue;
    }
    std::fprintf(stderr, "supernode: raft: no longer sending to member %llu at %s\n",
                 static_cast<unsigned long long>(l.member.id.get()), l.member.address().c_str());
    {
      std::lock_guard ll(l.mu);
      l.retired = true;
      l.queue.clear();
    }
    l.cv.notify_all();
    retired_.push_back(std::move(*it));
    it = links_.erase(it);
  }
  for (const auto& m : members) {
    if (m.id == self_) continue;
    bool have = false;
    for (const auto& l : links_) have = have || l->member == m;
    if (have) continue;
    auto link = std::make_unique<Link>();
    link->member = m;
    Link* l = link.get();
    links_.push_back(std::move(link));
    l->thread = std::thread([this, l] { run(*l); });
  }
}

std::vector<Member> MeshRaftTransport::members() const {
  std::lock_guard lock(links_mu_);
  std::vector<Member> out;
  for (const auto& l : links_) out.push_back(l->member);
  return out;
}

void MeshRaftTransport::stop() {
  std::vector<Link*> all;
  {
    std::lock_guard lock(links_mu_);
    stopping_ = true;
    for (auto& link : links_) all.push_back(link.get());
    for (auto& link : retired_) all.push_back(link.get());
  }
  for (Link* link : all) {
    {
      std::lock_guard lock(link->mu);
      link->queue.clear();
    }
    link->cv.notify_all();
  }
  for (Link* link : all) {
    if (link->thread.joinable()) link->thread.join();
  }
}

void MeshRaftTransport::send(std::vector<raft::Message> batch) {
  if (batch.empty() || stopping_) return;
  const raft::NodeId to = batch.front().to;
  std::lock_guard links_lock(links_mu_);
  for (auto& link : links_) {
    if (link->member.id != to) continue;
    {
      std::lock_guard lock(link->mu);
      for (auto& m : batch) {
        if (link->queue.size() >= kMaxQueuedMessages) break;  // dropped; Raft retransmits
        link->queue.push_back(std::move(m));
      }
    }
    link->cv.notify_one();
    return;
  }
  // A message for a node that is not a known member: nowhere to send it.
}

void MeshRaftTransport::run(Link& link) {
  std::unique_ptr<mesh::RpcClient> client;
  bool reported_down = false;
  while (!stopping_ && !link.retired) {
    std::vector<raft::Message> batch;
    {
      std::unique_lock lock(link.mu);
      link.cv.wait(lock, [&] { return stopping_ || link.retired || !link.queue.empty(); });
      if (stopping_ || link.retired) return;
      size_t bytes = 0;
      while (!link.queue.empty() && (batch.empty() || bytes < kMaxBatchBytes)) {
        const raft::Message& m = link.queue.front();
        for (const auto& e : m.entries) bytes += e.data.size() + 32;
        if (m.snapshot) bytes += m.snapshot->data.size();
        batch.push_back(std::move(link.queue.front()));
        link.queue.pop_front();
      }
    }
    auto report_failure = [&](const Error& e) {
      raft::Driver* driver = driver_.load();
      if (driver) {
        driver->report_unreachable(link.member.id);
        for (const auto& m : batch) {
          if (m.type == raft::MessageType::kSnap) driver->report_snapshot(link.member.id, false);
        }
      }
      if (!reported_down) {
        std::fprintf(stderr, "supernode: raft: member %llu at %s unreachable: %s\n",
                     static_cast<unsigned long long>(link.member.id.get()),
                     link.member.address().c_str(), e.message.c_str());
        reported_down = true;
      }
    };
    // A session made with this supernode's previous certificate stops working when that one
    // expires (the receiver checks it on every call): redial with the renewed one.
    if (client && client->outdated()) client.reset();
    if (!client) {
      auto dialed = mesh::RpcClient::connect(link.member.host, link.member.port, mesh_, 1s);
      if (!dialed.ok()) {
        report_failure(dialed.error());
        // Do not spin on a dead member: wait a little, dropping what queues meanwhile (the
        // leader's heartbeats keep coming and would only pile up).
        std::unique_lock lock(link.mu);
        link.cv.wait_for(lock, 200ms, [&] { return stopping_.load() || link.retired.load(); });
        link.queue.clear();
        continue;
      }
      client = std::move(dialed).value();
    }
    const std::string encoded = crypto::base64_encode(raft::encode_messages(batch));
    auto answer = client->call("Raft", {{"batch", encoded}}, 5s);
    if (!answer.ok()) {
      client.reset();
      report_failure(answer.error());
      continue;
    }
    if (reported_down) {
      std::fprintf(stderr, "supernode: raft: member %llu at %s reachable again\n",
                   static_cast<unsigned long long>(link.member.id.get()),
                   link.member.address().c_str());
      reported_down = false;
    }
    if (raft::Driver* driver = driver_.load()) {
      for (const auto& m : batch) {
        if (m.type == raft::MessageType::kSnap) driver->report_snapshot(link.member.id, true);
      }
    }
  }
}

}  // namespace starling::supernode
