// SHA-256 throughput of crypto::Sha256 against libsodium's crypto_hash_sha256 (the baseline),
// in the same run over the same buffer. Prints MiB/s for both and the ratio.
//   build/release/bench/hash_bench [MiB]
#include <sodium.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "crypto/hash.h"

int main(int argc, char** argv) {
  const int mib = argc > 1 ? std::atoi(argv[1]) : 512;
  if (mib <= 0 || sodium_init() < 0) return 2;
  std::vector<unsigned char> buf(1 << 20);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 131);
  using clock = std::chrono::steady_clock;
  double best_ours = 1e9;
  double best_base = 1e9;
  for (int round = 0; round < 3; ++round) {
    auto t0 = clock::now();
    starling::crypto::Sha256 ours;
    for (int i = 0; i < mib; ++i) ours.update(buf.data(), buf.size());
    (void)ours.finish();
    auto t1 = clock::now();
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    for (int i = 0; i < mib; ++i) crypto_hash_sha256_update(&st, buf.data(), buf.size());
    unsigned char out[32];
    crypto_hash_sha256_final(&st, out);
    auto t2 = clock::now();
    best_ours = std::min(best_ours, std::chrono::duration<double>(t1 - t0).count());
    best_base = std::min(best_base, std::chrono::duration<double>(t2 - t1).count());
  }
  std::printf("sha256 over %d MiB, best of 3\n", mib);
  std::printf("  crypto::Sha256 (OpenSSL)  %8.0f MiB/s\n", mib / best_ours);
  std::printf("  libsodium (baseline)      %8.0f MiB/s\n", mib / best_base);
  std::printf("  ratio                     %8.2f x\n", best_base / best_ours);
  return 0;
}
