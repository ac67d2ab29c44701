// raft_storage_writer PATH SEED: the process the kill -9 test SIGKILLs. Opens the
// SqliteRaftStorage at PATH and persists Readys in a loop, forever: batches of 1-8 workload
// entries with the hard state (commit = last index), printing "acked N" (N = last index) and
// flushing stdout only after persist() returned. Every few batches a speculative batch of
// conflicting entries is persisted first and never acknowledged (the next batch truncates
// it), and every ~100 entries the log is compacted (in the database, or through a snapshot
// file). Exit 2 if the store does not open, 3 if a
// write fails.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "supernode/raft/sqlite_storage.h"
#include "tests/raft/storage_workload.h"

using starling::Status;
using namespace starling::raft;           // NOLINT
using namespace starling::raft::testing;  // NOLINT

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: raft_storage_writer PATH SEED\n");
    return 1;
  }
  ConfState conf{{NodeId{1}}, {}, {}};
  auto opened = SqliteRaftStorage::open(argv[1], conf);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s: %s\n", opened.error().code.c_str(),
                 opened.error().message.c_str());
    return 2;
  }
  SqliteRaftStorage& s = **opened;
  std::mt19937_64 rng(std::strtoull(argv[2], nullptr, 10));

  // An unacknowledged speculative tail may have survived the last kill: write over it, as a
  // leader overwrites a follower's uncommitted conflicting entries.
  LogIndex next = s.last_index() + 1;
  while (next > s.first_index() &&
         s.entries(next - 1, next, kNoLimit)->front() != workload_entry(next - 1)) {
    next = next - 1;
  }
  HardState hs = s.hard_state();
  for (;;) {
    uint64_t k = 1 + rng() % 8;
    if (rng() % 4 == 0) {
      Ready spec;
      for (uint64_t j = 0; j < 1 + rng() % 4; ++j) {
        Entry e = workload_entry(next + j);
        e.data = "speculative, never acknowledged";
        spec.entries.push_back(std::move(e));
      }
      if (Status st = s.persist(spec); !st.ok()) {
        std::fprintf(stderr, "persist: %s\n", st.error().message.c_str());
        return 3;
      }
    }
    Ready rd;
    for (uint64_t j = 0; j < k; ++j) rd.entries.push_back(workload_entry(next + j));
    LogIndex last = next + (k - 1);
    hs = HardState{workload_term(last), NodeId{1}, last};
    rd.hard_state = hs;
    if (Status st = s.persist(rd); !st.ok()) {
      std::fprintf(stderr, "persist: %s\n", st.error().message.c_str());
      return 3;
    }
    std::printf("acked %llu\n", static_cast<unsigned long long>(last.get()));
    std::fflush(stdout);
    next = last + 1;
    if (last - s.first_index() >= 100) {
      LogIndex at = last - 20;
      // Half the time as the supernode's driver does it: the snapshot written to its own file
      // first, then recorded (the kill may land between the two, or during either).
      Status st;
      if (rng() % 2 == 0) {
        auto file = SqliteRaftStorage::write_snapshot_file(argv[1], at, workload_snapshot_data(at));
        st = file.ok() ? s.compact_to_file(*file, conf, workload_snapshot_data(at))
                       : Status(file.error());
      } else {
        st = s.compact(at, conf, workload_snapshot_data(at));
      }
      if (!st.ok()) {
        std::fprintf(stderr, "compact: %s\n", st.error().message.c_str());
        return 3;
      }
    }
  }
}
