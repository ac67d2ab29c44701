// Defaults of the supernode's settings that more than one place shows or uses: its config
// (supernode/supernode.h), its service (supernode/service.h) and `starling supernode --help`
// (cli/commands.cc). Only constants here, so that the CLI can include it.
#pragma once

#include <chrono>
#include <cstdint>

namespace starling::supernode {

// Segment size of the tasks a supernode creates (supernode/README.md "Seeding": why 16 MiB).
inline constexpr int64_t kDefaultSegmentSize = int64_t{16} << 20;
// How long a fetching task's seed lease may go unrenewed before the leader takes it over.
inline constexpr std::chrono::milliseconds kDefaultSeedLeaseTimeout{6000};

}  // namespace starling::supernode
