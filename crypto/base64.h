// Base64 (RFC 4648, standard alphabet, padded) through libsodium, for binary fields inside
// JSON messages (metainfo, Raft batches).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace starling::crypto {

std::string base64_encode(std::string_view bytes);
// nullopt unless `text` is exactly a padded standard base64 string (no whitespace).
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace starling::crypto
