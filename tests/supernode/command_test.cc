#include "supernode/tracker/command.h"

#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace starling::tracker {
namespace {

using nlohmann::json;

const TaskId kTask(std::string(64, 'a'));
const std::string kSeeder(64, '5');
const std::string kClient = "0123456789abcdef";

std::string binary_bytes(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(static_cast<char>((i * 131 + 7) & 0xff));
  return s;
}

std::vector<Command> every_command() {
  std::string torrent("d8:announce0:e\0\xff\x80", 17);
  return {
      CreateTask{kTask, "http://origin/f?a=1", std::nullopt, 1700000000, kSeeder, 64 << 20},
      CreateTask{kTask, "https://h/x", std::string("sha256:") + std::string(64, '0'), -5, kSeeder,
                 kMaxSegmentSize},
      MarkTaskReady{kTask, 9223372036854775807ull, 1234567890123, std::string(64, 'f'), "10.1.2.3",
                    6881},
      MarkTaskReady{kTask, 1, 0, "", "", 0},
      MarkTaskReady{kTask, 7, 1, "s", "::1", 65535},
      MarkTaskFailed{kTask, "origin.http_status", "origin returned HTTP 404 for http://h/f",
                     std::nullopt},
      RestartTask{kTask, kSeeder},
      KvPut{"a", "", std::nullopt},
      KvPut{"config/x", "1", 0},
      KvPut{"config/y", "12", 7},
      KvPut{"config/z", "123", 18446744073709551615ull},
      KvPut{"\xc3\xa9t\xc3\xa9/\xf0\x9f\x90\xa6", binary_bytes(1000), std::nullopt},
      KvPut{std::string(kMaxKvKeyBytes, 'k'), binary_bytes(kMaxKvValueBytes), 1},
      KvDelete{"a", std::nullopt},
      KvDelete{"a/b", 0},
      KvDelete{"a/b", 42},
      IssueCertificate{kSeeder, "peer", 1700000000, 1700043200},
      IssueCertificate{std::string(64, '0'), "supernode", 0, 1},
      IssueCertificate{kSeeder, "admin", 5, 9223372036854775807ll},
      RevokeCertificate{kSeeder, "lost laptop", 1700000100},
      RevokeCertificate{kSeeder, "", 0},
      RevokeCertificate{kSeeder, std::string(kMaxRevokeReasonBytes, 'r'), 1},
      RevokeCertificate{kSeeder, "\xc3\xa9t\xc3\xa9 \xf0\x9f\x90\xa6", 1},
      PublishSegment{kTask, 3, 0, 0, 1, "m", "", 0},
      PublishSegment{kTask, 12, 5, 5 * (64 << 20), 64 << 20, torrent, "10.1.2.3", 6881},
      RenewSeedLease{kTask, 1},
      RenewSeedLease{kTask, 9223372036854775807ull},
      TakeOverSeed{kTask, 4, kSeeder, "::1", 443},
      ReseedTask{kTask, 9, kSeeder, "198.18.0.7", 6881},
      MarkTaskFailed{kTask, "origin.io", "disk full", 42},
      MarkTaskFailed{kTask, "supernode.content_missing", "lost", 43, true},
  };
}

TEST(ProposalCodec, RoundTripsEveryCommand) {
  uint64_t seq = 0;
  for (const Command& c : every_command()) {
    Proposal p{kClient, seq++, c};
    std::string bytes = encode_proposal(p);
    auto decoded = decode_proposal(bytes);
    ASSERT_TRUE(decoded.ok()) << bytes.substr(0, 300) << ": " << decoded.error().message;
    EXPECT_EQ(*decoded, p) << command_name(c);
  }
  // Extremes of the envelope.
  for (const Proposal& p :
       {Proposal{"0", 0, RestartTask{kTask, kSeeder}},
        Proposal{std::string(64, 'f'), 18446744073709551615ull, KvDelete{"k", std::nullopt}}}) {
    auto decoded = decode_proposal(encode_proposal(p));
    ASSERT_TRUE(decoded.ok()) << decoded.error().message;
    EXPECT_EQ(*decoded, p);
  }
}

TEST(ProposalCodec, EncodingCarriesVersionClientAndType) {
  json j = json::parse(encode_proposal(Proposal{"ab", 9, KvPut{"k", "\x01\x02", 3}}));
  EXPECT_EQ(j["v"], 3);
  EXPECT_EQ(j["client_id"], "ab");
  EXPECT_EQ(j["seq"], 9);
  EXPECT_EQ(j["command"]["type"], "KvPut");
  EXPECT_EQ(j["command"]["value"], "AQI=");  // base64
  EXPECT_EQ(j["command"]["cas"], 3);
  // An unconditional write carries no cas at all (absent, not null).
  json u = json::parse(encode_proposal(Proposal{"ab", 9, KvPut{"k", "v", std::nullopt}}));
  EXPECT_FALSE(u["command"].contains("cas"));
}

TEST(ProposalCodec, CommandNames) {
  const char* names[] = {"CreateTask",
                         "CreateTask",
                         "MarkTaskReady",
                         "MarkTaskReady",
                         "MarkTaskReady",
                         "MarkTaskFailed",
                         "RestartTask",
                         "KvPut",
                         "KvPut",
                         "KvPut",
                         "KvPut",
                         "KvPut",
                         "KvPut",
                         "KvDelete",
                         "KvDelete",
                         "KvDelete",
                         "IssueCertificate",
                         "IssueCertificate",
                         "IssueCertificate",
                         "RevokeCertificate",
                         "RevokeCertificate",
                         "RevokeCertificate",
                         "RevokeCertificate",
                         "PublishSegment",
                         "PublishSegment",
                         "RenewSeedLease",
                         "RenewSeedLease",
                         "TakeOverSeed",
                         "ReseedTask",
                         "MarkTaskFailed",
                         "MarkTaskFailed"};
  auto commands = every_command();
  ASSERT_EQ(commands.size(), std::size(names));
  for (size_t i = 0; i < commands.size(); ++i) EXPECT_STREQ(command_name(commands[i]), names[i]);
}

void expect_rejected(const std::string& bytes) {
  auto decoded = decode_proposal(bytes);
  EXPECT_FALSE(decoded.ok()) << "accepted: " << bytes.substr(0, 400);
  if (!decoded.ok()) {
    EXPECT_EQ(decoded.error().code, kErrBadCommand);
  }
}

json valid_envelope(const Command& c) {
  return json::parse(encode_proposal(Proposal{kClient, 1, c}));
}

TEST(ProposalCodec, EveryRequiredFieldIsRequired) {
  for (const Command& c : every_command()) {
    json base = valid_envelope(c);
    // Envelope fields.
    for (const char* field : {"v", "client_id", "seq", "command"}) {
      json j = base;
      j.erase(field);
      expect_rejected(j.dump());
    }
    // Command fields (digest, cas and MarkTaskFailed's epoch and seed_lost are the only
    // optional ones).
    for (auto it = base["command"].begin(); it != base["command"].end(); ++it) {
      if (it.key() == "digest" || it.key() == "cas") continue;
      if ((it.key() == "epoch" || it.key() == "seed_lost") &&
          std::holds_alternative<MarkTaskFailed>(c)) {
        continue;
      }
      json j = base;
      j["command"].erase(it.key());
      expect_rejected(j.dump());
    }
  }
}

TEST(ProposalCodec, EveryFieldHasItsType) {
  // Replacing any field by a value of another JSON type is refused.
  const json wrong_types[] = {nullptr, true, 1.5, "x", json::array(), json::object(), -1};
  for (const Command& c : every_command()) {
    json base = valid_envelope(c);
    for (auto it = base["command"].begin(); it != base["command"].end(); ++it) {
      for (const json& w : wrong_types) {
        if (w.type() == it->type() ||
            (w.is_number_integer() && it->is_number_integer() && it.key() == "created_at")) {
          continue;  // same type, or a negative created_at, which is a valid time
        }
        json j = base;
        j["command"][it.key()] = w;
        expect_rejected(j.dump());
      }
    }
    for (const char* field : {"v", "client_id", "seq", "command"}) {
      for (const json& w : wrong_types) {
        if (w.type() == base[field].type()) continue;
        json j = base;
        j[field] = w;
        expect_rejected(j.dump());
      }
    }
  }
}

TEST(ProposalCodec, UnknownFieldsAreRefused) {
  for (const Command& c : every_command()) {
    json j = valid_envelope(c);
    j["command"]["extra"] = 1;
    expect_rejected(j.dump());
    json k = valid_envelope(c);
    k["extra"] = 1;
    expect_rejected(k.dump());
  }
}

TEST(ProposalCodec, RejectsMalformedInput) {
  auto with = [](const std::function<void(json&)>& edit, const Command& c) {
    json j = valid_envelope(c);
    edit(j);
    return j.dump();
  };
  const Command put = KvPut{"k", "v", std::nullopt};
  const Command create = CreateTask{kTask, "u", std::nullopt, 1, kSeeder, 1024};
  const Command ready = MarkTaskReady{kTask, 1, 1, "s", "", 0};
  const Command publish = PublishSegment{kTask, 2, 0, 0, 10, "m", "", 0};
  const Command renew = RenewSeedLease{kTask, 2};
  const Command takeover = TakeOverSeed{kTask, 2, kSeeder, "", 0};
  const Command reseed = ReseedTask{kTask, 2, kSeeder, "", 0};
  const Command failed = MarkTaskFailed{kTask, "c", "m", 2};
  const Command restart = RestartTask{kTask, kSeeder};
  const Command issue = IssueCertificate{kSeeder, "peer", 10, 20};
  const Command revoke = RevokeCertificate{kSeeder, "why", 30};
  const std::string cases[] = {
      "",
      "null",
      "[]",
      "\"KvPut\"",
      "{",
      std::string("\0\0\0", 3),
      encode_proposal(Proposal{kClient, 1, put}).substr(1),
      // version: 1 (the pre-Raft encoding), 2 (before segments) and anything else but 3
      with([](json& j) { j["v"] = 1; }, put),
      with([](json& j) { j["v"] = 2; }, put),
      with([](json& j) { j["v"] = 4; }, put),
      with([](json& j) { j["v"] = "3"; }, put),
      with([](json& j) { j["v"] = 3.0; }, put),
      R"({"v":2,"client_id":"ab","seq":1,"command":{"type":"CreateTask","task_id":")" +
          std::string(64, 'a') + R"(","url":"u","created_at":1,"seeder":")" + kSeeder + R"("}})",
      R"({"v":1,"type":"RestartTask","task_id":")" + std::string(64, 'a') + R"("})",
      // client ids
      with([](json& j) { j["client_id"] = ""; }, put),
      with([](json& j) { j["client_id"] = std::string(65, 'a'); }, put),
      with([](json& j) { j["client_id"] = "ABCDEF"; }, put),
      with([](json& j) { j["client_id"] = "xyz"; }, put),
      with([](json& j) { j["client_id"] = "ab cd"; }, put),
      with([](json& j) { j["client_id"] = 12; }, put),
      // seq
      with([](json& j) { j["seq"] = -1; }, put),
      with([](json& j) { j["seq"] = 1.5; }, put),
      R"({"v":3,"client_id":"ab","seq":18446744073709551616,"command":{"type":"KvDelete","key":"k"}})",
      // command
      with([](json& j) { j["command"] = "KvPut"; }, put),
      with([](json& j) { j["command"]["type"] = "DropTables"; }, put),
      with([](json& j) { j["command"]["type"] = 7; }, put),
      with([](json& j) { j["command"].erase("type"); }, put),
      // task ids and seeders
      with([](json& j) { j["command"]["task_id"] = "abc"; }, restart),
      with([](json& j) { j["command"]["task_id"] = std::string(64, 'A'); }, restart),
      with([](json& j) { j["command"]["task_id"] = std::string(64, 'g'); }, restart),
      with([](json& j) { j["command"]["seeder"] = ""; }, restart),
      with([](json& j) { j["command"]["seeder"] = std::string(63, 'a'); }, create),
      with([](json& j) { j["command"]["seeder"] = std::string(64, 'F'); }, create),
      // sizes, ports, hex, timestamps
      with([](json& j) { j["command"]["created_at"] = 18446744073709551615ull; }, create),
      with([](json& j) { j["command"]["size"] = -1; }, ready),
      with([](json& j) { j["command"]["seed_port"] = 65536; }, ready),
      with([](json& j) { j["command"]["seed_port"] = -1; }, ready),
      // segments and leases: sizes, epochs, metainfo
      with([](json& j) { j["command"]["segment_size"] = 0; }, create),
      with([](json& j) { j["command"]["segment_size"] = kMaxSegmentSize + 1; }, create),
      with([](json& j) { j["command"].erase("segment_size"); }, create),
      with([](json& j) { j["command"]["epoch"] = 0; }, ready),
      with([](json& j) { j["command"]["epoch"] = 9223372036854775808ull; }, renew),
      with([](json& j) { j["command"]["epoch"] = 0; }, publish),
      with([](json& j) { j["command"]["epoch"] = 0; }, failed),
      with([](json& j) { j["command"]["epoch"] = -1; }, failed),
      with([](json& j) { j["command"]["expected_epoch"] = 0; }, takeover),
      with([](json& j) { j["command"]["new_seeder"] = "x"; }, takeover),
      with([](json& j) { j["command"]["seed_port"] = 65536; }, takeover),
      with([](json& j) { j["command"]["expected_epoch"] = 0; }, reseed),
      with([](json& j) { j["command"]["new_seeder"] = "x"; }, reseed),
      with([](json& j) { j["command"]["seed_port"] = -1; }, reseed),
      with([](json& j) { j["command"]["extra"] = 1; }, reseed),
      with([](json& j) { j["command"].erase("seed_ip"); }, reseed),
      with([](json& j) { j["command"]["index"] = -1; }, publish),
      with([](json& j) { j["command"]["offset"] = -1; }, publish),
      with([](json& j) { j["command"]["size"] = 0; }, publish),
      with([](json& j) { j["command"]["size"] = kMaxSegmentSize + 1; }, publish),
      with([](json& j) { j["command"]["offset"] = 9223372036854775807ll; }, publish),
      with([](json& j) { j["command"]["metainfo"] = ""; }, publish),
      with([](json& j) { j["command"]["metainfo"] = "xyz"; }, publish),
      with([](json& j) { j["command"]["metainfo"] = "6"; }, publish),
      with(
          [](json& j) {
            j["command"]["metainfo"] = std::string(2 * kMaxSegmentMetainfoBytes + 2, '6');
          },
          publish),
      with([](json& j) { j["command"]["seed_port"] = 70000; }, publish),
      // kv keys: empty, oversize, NUL
      with([](json& j) { j["command"]["key"] = ""; }, put),
      with([](json& j) { j["command"]["key"] = std::string(kMaxKvKeyBytes + 1, 'k'); }, put),
      with([](json& j) { j["command"]["key"] = std::string("a\0b", 3); }, put),
      // kv values: oversize, not base64, not canonical base64
      with([](json& j) { j["command"]["value"] = to_base64(binary_bytes(kMaxKvValueBytes + 1)); },
           put),
      with([](json& j) { j["command"]["value"] = "a"; }, put),
      with([](json& j) { j["command"]["value"] = "YQ"; }, put),
      with([](json& j) { j["command"]["value"] = "YR=="; }, put),
      with([](json& j) { j["command"]["value"] = "YWI=YWI="; }, put),
      with([](json& j) { j["command"]["value"] = "YW I"; }, put),
      // cas
      with([](json& j) { j["command"]["cas"] = -1; }, put),
      with([](json& j) { j["command"]["cas"] = "1"; }, put),
      with([](json& j) { j["command"]["cas"] = nullptr; }, put),
      with([](json& j) { j["command"]["cas"] = 1.0; }, KvDelete{"k", std::nullopt}),
      // certificates: node ids, roles, validity, reasons, times
      with([](json& j) { j["command"]["node_id"] = std::string(64, 'A'); }, issue),
      with([](json& j) { j["command"]["node_id"] = std::string(63, 'a'); }, revoke),
      with([](json& j) { j["command"]["node_id"] = ""; }, revoke),
      with([](json& j) { j["command"]["role"] = "root"; }, issue),
      with([](json& j) { j["command"]["role"] = "Peer"; }, issue),
      with([](json& j) { j["command"]["role"] = ""; }, issue),
      with([](json& j) { j["command"]["not_after"] = 10; }, issue),  // == not_before
      with([](json& j) { j["command"]["not_after"] = 9; }, issue),
      with([](json& j) { j["command"]["not_before"] = -1; }, issue),
      with([](json& j) { j["command"]["not_after"] = 18446744073709551615ull; }, issue),
      with([](json& j) { j["command"]["reason"] = std::string(kMaxRevokeReasonBytes + 1, 'r'); },
           revoke),
      with([](json& j) { j["command"]["reason"] = "two\nlines"; }, revoke),
      with([](json& j) { j["command"]["reason"] = std::string("nul\0", 4); }, revoke),
      with([](json& j) { j["command"]["reason"] = "del\x7f"; }, revoke),
      with([](json& j) { j["command"]["revoked_at"] = -1; }, revoke),
      R"({"v":3,"client_id":"ab","seq":1,"command":{"type":"RevokeCertificate","node_id":")" +
          kSeeder + R"(","reason":"bad \xff utf-8","revoked_at":1}})",
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    SCOPED_TRACE(i);
    expect_rejected(cases[i]);
  }
}

TEST(ProposalCodec, KeyLimitCountsBytesNotCharacters) {
  // 128 four-byte characters = 512 bytes: accepted; one more byte: refused.
  std::string key;
  for (int i = 0; i < 128; ++i) key += "\xf0\x9f\x90\xa6";
  ASSERT_EQ(key.size(), kMaxKvKeyBytes);
  EXPECT_TRUE(
      decode_proposal(encode_proposal(Proposal{"a", 1, KvPut{key, "v", std::nullopt}})).ok());
  EXPECT_TRUE(validate_kv_key(key).ok());
  EXPECT_FALSE(validate_kv_key(key + "x").ok());
}

TEST(ProposalCodec, ValidateCatchesWhatJsonCannotCarry) {
  // Built in memory (not decoded): invalid UTF-8 keys never reach the encoder's U+FFFD
  // replacement because validate_command refuses them first.
  const std::string bad_keys[] = {
      "\xff",
      "a\x80",
      "\xc0\xaf",             // overlong '/'
      "\xe0\x80\xaf",         // overlong
      "\xed\xa0\x80",         // surrogate U+D800
      "\xf4\x90\x80\x80",     // U+110000
      "\xe2\x82",             // truncated
      std::string("a\0", 2),  // NUL
  };
  for (const std::string& k : bad_keys) {
    Status st = validate_command(KvPut{k, "v", std::nullopt});
    ASSERT_FALSE(st.ok()) << k;
    EXPECT_EQ(st.error().code, kErrBadCommand);
    EXPECT_FALSE(validate_command(KvDelete{k, std::nullopt}).ok());
  }
  EXPECT_TRUE(validate_kv_key("\xf4\x8f\xbf\xbf").ok());  // U+10FFFF
  EXPECT_TRUE(validate_kv_key("\xef\xbf\xbd").ok());      // U+FFFD
  EXPECT_FALSE(validate_command(KvPut{"k", std::string(kMaxKvValueBytes + 1, 'v'), 0}).ok());
  EXPECT_FALSE(validate_command(CreateTask{kTask, "u", std::nullopt, 1, "", 1}).ok());
  EXPECT_FALSE(validate_command(CreateTask{kTask, "u", std::nullopt, 1, kSeeder, 0}).ok());
  EXPECT_TRUE(validate_command(CreateTask{kTask, "u", std::nullopt, 1, kSeeder, 1}).ok());
  EXPECT_FALSE(validate_command(MarkTaskReady{TaskId("x"), 1, 1, "", "", 0}).ok());
  EXPECT_FALSE(validate_command(MarkTaskReady{kTask, 0, 1, "", "", 0}).ok());
  EXPECT_FALSE(
      validate_command(
          PublishSegment{kTask, 1, 0, 0, 1, std::string(kMaxSegmentMetainfoBytes + 1, 'm'), "", 0})
          .ok());
  EXPECT_TRUE(validate_command(PublishSegment{kTask, 1, 0, 0, 1,
                                              std::string(kMaxSegmentMetainfoBytes, 'm'), "", 0})
                  .ok());
  EXPECT_FALSE(validate_command(TakeOverSeed{kTask, 1, "", "", 0}).ok());
  EXPECT_FALSE(validate_command(ReseedTask{kTask, 1, "", "", 0}).ok());
  EXPECT_FALSE(validate_command(ReseedTask{kTask, 0, kSeeder, "", 0}).ok());
  EXPECT_TRUE(validate_command(ReseedTask{kTask, 1, kSeeder, "", 0}).ok());
  EXPECT_FALSE(validate_command(RenewSeedLease{kTask, 0}).ok());
  EXPECT_FALSE(validate_command(MarkTaskFailed{kTask, "c", "m", std::nullopt, true}).ok());
  EXPECT_FALSE(validate_command(MarkTaskFailed{kTask, "c", "m", 0, true}).ok());
  EXPECT_TRUE(validate_command(MarkTaskFailed{kTask, "c", "m", 1, true}).ok());
  EXPECT_FALSE(validate_proposal(Proposal{"", 1, KvDelete{"k", std::nullopt}}).ok());
  EXPECT_FALSE(validate_proposal(Proposal{"A", 1, KvDelete{"k", std::nullopt}}).ok());
  EXPECT_TRUE(validate_proposal(Proposal{"a", 1, KvDelete{"k", std::nullopt}}).ok());
  EXPECT_TRUE(is_client_id(std::string(64, '9')));
  EXPECT_FALSE(is_client_id(std::string(65, '9')));
  // Revocation reasons: byte limit, UTF-8, one line.
  EXPECT_FALSE(validate_command(RevokeCertificate{kSeeder, "\xff", 1}).ok());
  EXPECT_FALSE(validate_command(RevokeCertificate{kSeeder, "\xed\xa0\x80", 1}).ok());
  EXPECT_FALSE(validate_command(RevokeCertificate{kSeeder, "a\rb", 1}).ok());
  EXPECT_FALSE(validate_command(RevokeCertificate{kSeeder, "a\tb", 1}).ok());
  std::string birds;
  for (int i = 0; i < 64; ++i) birds += "\xf0\x9f\x90\xa6";  // 256 bytes, 64 characters
  EXPECT_TRUE(validate_command(RevokeCertificate{kSeeder, birds, 1}).ok());
  EXPECT_FALSE(validate_command(RevokeCertificate{kSeeder, birds + "x", 1}).ok());
  EXPECT_FALSE(validate_command(IssueCertificate{kSeeder, "peer ", 1, 2}).ok());
  EXPECT_FALSE(validate_command(IssueCertificate{"", "peer", 1, 2}).ok());
  EXPECT_TRUE(is_node_id(kSeeder));
  EXPECT_FALSE(is_node_id(kSeeder + "0"));
  EXPECT_TRUE(is_certificate_role("admin"));
  EXPECT_FALSE(is_certificate_role("ADMIN"));
}

TEST(Base64, MatchesRfc4648AndRefusesNonCanonicalForms) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {"\xff\xfe", "//4="},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(to_base64(plain), encoded);
    auto back = from_base64(encoded);
    ASSERT_TRUE(back.has_value()) << encoded;
    EXPECT_EQ(*back, plain);
  }
  for (const char* bad : {"Zg", "Zg=", "Zh==", "Zm9=", "Z===", "====", "Zg==Zg==", "Zm9v\n", "Zm-v",
                          "Zm_v", "=Zm9"}) {
    EXPECT_FALSE(from_base64(bad).has_value()) << bad;
  }
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(from_base64(to_base64(all)), all);
}

TEST(ProposalCodec, InvalidUtf8InFreeTextIsReplacedNotThrown) {
  Proposal p{"a", 1,
             MarkTaskFailed{kTask, "origin.io", std::string("bad \xff\xfe bytes"), std::nullopt}};
  auto decoded = decode_proposal(encode_proposal(p));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(std::get<MarkTaskFailed>(decoded->command).code, "origin.io");
}

TEST(ProposalCodec, SurvivesDeepNestingAndGarbage) {
  std::string deep(100000, '[');
  EXPECT_FALSE(decode_proposal(deep).ok());
  std::string deep_closed = std::string(10000, '[') + std::string(10000, ']');
  EXPECT_FALSE(decode_proposal(deep_closed).ok());
  std::string deep_command = R"({"v":3,"client_id":"a","seq":1,"command":)" +
                             std::string(10000, '[') + std::string(10000, ']') + "}";
  EXPECT_FALSE(decode_proposal(deep_command).ok());
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage.push_back(static_cast<char>((i * 7919) & 0xff));
  EXPECT_FALSE(decode_proposal(garbage).ok());
}

}  // namespace
}  // namespace starling::tracker
