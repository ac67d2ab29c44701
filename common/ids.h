// Strong identifier types. Ids are never bare integers or strings in interfaces.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

namespace starling {

template <class Tag, class T>
class StrongId {
 public:
  StrongId() = default;
  explicit StrongId(T v) : v_(std::move(v)) {}
  const T& get() const { return v_; }
  auto operator<=>(const StrongId&) const = default;
  bool operator==(const StrongId&) const = default;

 private:
  T v_{};
};

// A task: one piece of content. 64 lowercase hex characters (see common/task_id.h).
using TaskId = StrongId<struct TaskIdTag, std::string>;
// A node of the mesh: lowercase hex of its Ed25519 public key (64 characters).
using NodeId = StrongId<struct NodeIdTag, std::string>;

}  // namespace starling

template <class Tag, class T>
struct std::hash<starling::StrongId<Tag, T>> {
  size_t operator()(const starling::StrongId<Tag, T>& id) const noexcept {
    return std::hash<T>{}(id.get());
  }
};
