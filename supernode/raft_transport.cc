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
    : mesh_(std::move(mesh)) {
  for (const auto& m : members) {
    if (m.id == self) continue;
    auto link = std::make_unique<Link>();
    link->member = m;
    links_.push_back(std::move(link));
  }
  for (auto& link : links_) {
    Link* l = link.get();
    l->thread = std::thread([this, l] { run(*l); });
  }
}

MeshRaftTransport::~MeshRaftTransport() { stop(); }

void MeshRaftTransport::stop() {
  stopping_ = true;
  for (auto& link : links_) {
    {
      std::lock_guard lock(link->mu);
      link->queue.clear();
    }
    link->cv.notify_all();
  }
  for (auto& link : links_) {
    if (link->thread.joinable()) link->thread.join();
  }
}

void MeshRaftTransport::send(std::vector<raft::Message> batch) {
  if (batch.empty() || stopping_) return;
  const raft::NodeId to = batch.front().to;
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
  // A message for a node that is not a configured member: nowhere to send it.
}

void MeshRaftTransport::run(Link& link) {
  std::unique_ptr<mesh::RpcClient> client;
  bool reported_down = false;
  while (!stopping_) {
    std::vector<raft::Message> batch;
    {
      std::unique_lock lock(link.mu);
      link.cv.wait(lock, [&] { return stopping_ || !link.queue.empty(); });
      if (stopping_) return;
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
        link.cv.wait_for(lock, 200ms, [&] { return stopping_.load(); });
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
