#include "peer/supernode_pool.h"

#include <algorithm>
#include <cassert>
#include <future>
#include <optional>
#include <set>
#include <utility>

#include "mesh/rpc.h"

namespace starling::peer {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// What the caller does with one member's result.
enum class Outcome {
  kAnswer,  // success, or the member's own answer (task.unknown, rpc.forbidden, ...)
  kFinal,   // stop at once: another member would say the same (wrong network key)
  kSkip,    // this member cannot be used (it rejected us or we rejected it); no point waiting
  kRetry,   // another member, or this one a little later, may answer
};

Outcome classify(const Result<json>& r) {
  if (r.ok()) return Outcome::kAnswer;
  const std::string& code = r.error().code;
  if (code == mesh::kErrHandshake) return Outcome::kFinal;
  if (code == mesh::kErrPeerRejected) return Outcome::kSkip;
  if (is_retryable(r.error())) return Outcome::kRetry;
  return Outcome::kAnswer;
}

bool is_transport_failure(const Error& e) { return e.code.starts_with("mesh."); }

// One member's failure for the "tried ..." list; mesh errors already name the address.
std::string describe(const Error& e) {
  return is_transport_failure(e) ? e.message : e.message + " [" + e.code + "]";
}

std::vector<SupernodeEndpoint> without_duplicates(std::vector<SupernodeEndpoint> in) {
  std::vector<SupernodeEndpoint> out;
  for (auto& e : in) {
    if (std::find(out.begin(), out.end(), e) == out.end()) out.push_back(std::move(e));
  }
  return out;
}

std::string seconds_text(milliseconds d) {
  const auto tenths = d.count() / 100;
  return std::to_string(tenths / 10) + (tenths % 10 != 0 ? "." + std::to_string(tenths % 10) : "") +
         " s";
}

}  // namespace

bool is_retryable(const Error& e) {
  return e.code == mesh::kErrConnect || e.code == mesh::kErrClosed ||
         e.code == mesh::kErrProtocol || e.code == mesh::kErrTimeout ||
         e.code.starts_with("raft.") || e.code.starts_with("cluster.") || e.code == kErrNoSupernode;
}

json merge_peer_answers(const std::vector<json>& answers) {
  json merged = json::object();
  if (!answers.empty() && answers.front().is_object()) merged = answers.front();
  json peers = json::array();
  std::set<std::string> seen;
  for (const auto& answer : answers) {
    if (!answer.is_object()) continue;
    auto list = answer.find("peers");
    if (list == answer.end() || !list->is_array()) continue;
    for (const auto& entry : *list) {
      if (!entry.is_object()) continue;
      auto id = entry.find("node_id");
      if (id == entry.end() || !id->is_string()) continue;
      if (seen.insert(id->get<std::string>()).second) peers.push_back(entry);
    }
  }
  merged["peers"] = std::move(peers);
  return merged;
}

struct SupernodePool::Member {
  std::mutex mu;                            // held across connect and call
  std::unique_ptr<mesh::RpcClient> client;  // guarded by mu
  uint64_t client_generation = 0;           // guarded by mu: the payload it was dialled with
  // Health, guarded by the pool's mu_.
  int failures = 0;  // consecutive transport failures
  Clock::time_point cool_until{};
  std::optional<Error> last_failure;  // the transport failure that started the cooldown
};

struct SupernodePool::Attempt {
  Outcome outcome = Outcome::kAnswer;
  Result<json> result = json::object();
};

SupernodePool::SupernodePool(std::vector<SupernodeEndpoint> members, mesh::MeshConfig mesh,
                             SupernodePoolOptions options)
    : endpoints_(without_duplicates(std::move(members))),
      options_(options),
      mesh_(std::move(mesh)) {
  assert(!endpoints_.empty());
  for (size_t i = 0; i < endpoints_.size(); ++i) members_.push_back(std::make_unique<Member>());
}

SupernodePool::~SupernodePool() { stop(); }

void SupernodePool::set_payload(std::string payload) {
  std::lock_guard lock(mu_);
  mesh_.payload = std::move(payload);
  ++generation_;
}

void SupernodePool::stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

SupernodeEndpoint SupernodePool::current() const {
  std::lock_guard lock(mu_);
  return endpoints_[current_];
}

SupernodePool::Attempt SupernodePool::attempt(size_t index, const std::string& method,
                                              const json& params, milliseconds connect_timeout,
                                              milliseconds timeout) {
  Member& m = *members_[index];
  const SupernodeEndpoint& at = endpoints_[index];
  std::lock_guard session_lock(m.mu);
  std::optional<mesh::MeshConfig> config;
  uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    generation = generation_;
    if (m.client && m.client_generation != generation) m.client.reset();
    if (!m.client) {
      // Callers that queued behind an attempt that just failed do not each wait out the same
      // dead (or black-holed) member again: until its cooldown ends it fails at once.
      if (m.last_failure && Clock::now() < m.cool_until) {
        return {classify(*m.last_failure), *m.last_failure};
      }
      config = mesh_;
      // The Noise handshake is part of connecting: bound it too.
      config->handshake_timeout = std::min(config->handshake_timeout, connect_timeout);
    }
  }
  Result<json> result = json::object();
  if (!m.client) {
    auto client = mesh::RpcClient::connect(at.host, at.port, *config, connect_timeout);
    if (client) {
      m.client = std::move(*client);
      m.client_generation = generation;
    } else {
      result = client.error();
    }
  }
  if (m.client) {
    result = m.client->call(method, params, timeout);
    if (!result && is_transport_failure(result.error())) m.client.reset();  // redial next time
  }
  std::lock_guard lock(mu_);
  if (!result && is_transport_failure(result.error())) {
    m.failures = std::min(m.failures + 1, 4);
    m.cool_until = Clock::now() + options_.member_cooldown * (1 << (m.failures - 1));
    m.last_failure = result.error();
  } else {
    m.failures = 0;
    m.cool_until = {};
    m.last_failure.reset();
  }
  const Outcome outcome = classify(result);
  return {outcome, std::move(result)};
}

std::vector<size_t> SupernodePool::round_order(bool skip_cooling) {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  std::vector<size_t> healthy, cooling;
  for (size_t k = 0; k < members_.size(); ++k) {
    const size_t i = (current_ + k) % members_.size();
    (members_[i]->cool_until <= now ? healthy : cooling).push_back(i);
  }
  if (skip_cooling && !healthy.empty()) return healthy;
  healthy.insert(healthy.end(), cooling.begin(), cooling.end());
  return healthy;
}

Error SupernodePool::unavailable(const std::string& what,
                                 const std::vector<std::string>& tried) const {
  std::string list;
  for (size_t i = 0; i < tried.size(); ++i) {
    if (tried[i].empty()) continue;
    if (!list.empty()) list += "; ";
    list += endpoints_[i].str() + ": " + tried[i];
  }
  return make_error(kErrNoSupernode, what + " (tried " + list + ")");
}

Result<json> SupernodePool::call(const std::string& method, const json& params) {
  return call(method, params, options_.deadline);
}

Result<json> SupernodePool::call(const std::string& method, const json& params,
                                 milliseconds deadline) {
  const auto start = Clock::now();
  const auto end = start + deadline;
  auto backoff = options_.first_backoff;
  std::vector<std::string> tried(members_.size());  // each member's last failure
  const Error stopped = make_error(kErrPoolStopped, method + ": the peer daemon is stopping");
  for (bool first_round = true;; first_round = false) {
    bool worth_retrying = false;
    std::optional<Error> skipped;
    for (size_t i : round_order(false)) {
      const auto now = Clock::now();
      if (!first_round && now >= end) break;
      {
        std::lock_guard lock(mu_);
        if (stopped_) return stopped;
      }
      // An attempt never runs much past the deadline, but always gets a fair chance.
      const auto left = std::max(std::chrono::duration_cast<milliseconds>(end - now),
                                 options_.min_attempt_timeout);
      Attempt a = attempt(i, method, params, std::min(options_.connect_timeout, left),
                          std::min(options_.call_timeout, left));
      switch (a.outcome) {
        case Outcome::kAnswer: {
          std::lock_guard lock(mu_);
          current_ = i;
          return std::move(a.result);
        }
        case Outcome::kFinal:
          return std::move(a.result);
        case Outcome::kSkip:
          if (!skipped) skipped = a.result.error();
          tried[i] = describe(a.result.error());
          break;
        case Outcome::kRetry:
          worth_retrying = true;
          tried[i] = describe(a.result.error());
          break;
      }
    }
    if (!worth_retrying && skipped) {
      // Every member refused the certificate exchange: waiting would not change that.
      Error e = unavailable("no supernode could be used for " + method, tried);
      e.code = skipped->code;
      return e;
    }
    const auto now = Clock::now();
    if (now >= end) {
      return unavailable("no supernode answered " + method +
                             (deadline.count() > 0 ? " within " + seconds_text(deadline) : ""),
                         tried);
    }
    std::unique_lock lock(mu_);
    const auto pause = std::min<Clock::duration>(backoff, end - now);
    if (cv_.wait_for(lock, pause, [this] { return stopped_; })) return stopped;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

Result<json> SupernodePool::call_all(const std::string& method, const json& params) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return make_error(kErrPoolStopped, method + ": the peer daemon is stopping");
  }
  const std::vector<size_t> order = round_order(true);
  auto one = [&](size_t i) {
    return attempt(i, method, params, std::min(options_.connect_timeout, options_.call_all_timeout),
                   std::min(options_.call_timeout, options_.call_all_timeout));
  };
  // The first member on this thread, the others each on their own, all at once.
  std::vector<std::future<Attempt>> others;
  for (size_t k = 1; k < order.size(); ++k) {
    others.push_back(std::async(std::launch::async | std::launch::deferred, one, order[k]));
  }
  std::vector<Attempt> attempts;
  attempts.push_back(one(order[0]));
  for (auto& f : others) attempts.push_back(f.get());

  std::vector<json> answers;
  std::vector<std::string> tried(members_.size());
  std::optional<Error> own_error;  // a member's own answer, or a final refusal
  bool worth_retrying = false;
  for (size_t k = 0; k < attempts.size(); ++k) {
    Attempt& a = attempts[k];
    if (a.result.ok()) {
      answers.push_back(std::move(*a.result));
      continue;
    }
    const Error& e = a.result.error();
    tried[order[k]] = describe(e);
    if (a.outcome == Outcome::kRetry) worth_retrying = true;
    if ((a.outcome == Outcome::kAnswer || a.outcome == Outcome::kFinal) && !own_error) {
      own_error = e;
    }
  }
  if (!answers.empty()) return merge_peer_answers(answers);
  if (own_error) return *own_error;
  Error e = unavailable("no supernode answered " + method, tried);
  if (!worth_retrying) e.code = mesh::kErrPeerRejected;
  return e;
}

}  // namespace starling::peer
