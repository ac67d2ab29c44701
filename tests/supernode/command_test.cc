#include "supernode/tracker/command.h"

#include <gtest/gtest.h>

#include <string>

namespace starling::tracker {
namespace {

const TaskId kTask(std::string(64, 'a'));

TEST(CommandCodec, RoundTripsEveryCommand) {
  std::string binary("d8:announce0:e\0\xff\x80", 17);
  const Command commands[] = {
      CreateTask{kTask, "http://origin/f?a=1", std::nullopt, 1700000000},
      CreateTask{kTask, "https://h/x", std::string("sha256:") + std::string(64, '0'), -5},
      MarkTaskReady{kTask, 1234567890123, std::string(64, 'f'), binary},
      MarkTaskReady{kTask, 0, "", ""},
      MarkTaskFailed{kTask, "origin.http_status", "origin returned HTTP 404 for http://h/f"},
      RestartTask{kTask},
  };
  for (const Command& c : commands) {
    std::string bytes = encode_command(c);
    auto decoded = decode_command(bytes);
    ASSERT_TRUE(decoded.ok()) << bytes << ": " << decoded.error().message;
    EXPECT_EQ(*decoded, c) << bytes;
  }
}

TEST(CommandCodec, EncodingCarriesVersionAndType) {
  std::string bytes = encode_command(RestartTask{kTask});
  EXPECT_NE(bytes.find("\"v\":1"), std::string::npos) << bytes;
  EXPECT_NE(bytes.find("\"type\":\"RestartTask\""), std::string::npos) << bytes;
}

TEST(CommandCodec, InvalidUtf8IsReplacedNotThrown) {
  MarkTaskFailed c{kTask, "origin.io", std::string("bad \xff\xfe bytes")};
  std::string bytes = encode_command(c);
  auto decoded = decode_command(bytes);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(std::get<MarkTaskFailed>(*decoded).code, "origin.io");
}

TEST(CommandCodec, RejectsMalformedInput) {
  const std::string id = std::string(64, 'a');
  const std::string cases[] = {
      "",
      "null",
      "[]",
      "\"CreateTask\"",
      "{",
      std::string("{\"v\":1,\"type\":\"RestartTask\",\"task_id\":\"") + id + "\"",
      std::string("\0\0\0", 3),
      // version
      R"({"type":"RestartTask","task_id":")" + id + R"("})",
      R"({"v":2,"type":"RestartTask","task_id":")" + id + R"("})",
      R"({"v":"1","type":"RestartTask","task_id":")" + id + R"("})",
      R"({"v":1.0,"type":"RestartTask","task_id":")" + id + R"("})",
      // type
      R"({"v":1,"task_id":")" + id + R"("})",
      R"({"v":1,"type":"DropTables","task_id":")" + id + R"("})",
      R"({"v":1,"type":7,"task_id":")" + id + R"("})",
      // task id
      R"({"v":1,"type":"RestartTask"})",
      R"({"v":1,"type":"RestartTask","task_id":"abc"})",
      R"({"v":1,"type":"RestartTask","task_id":")" + std::string(64, 'A') + R"("})",
      R"({"v":1,"type":"RestartTask","task_id":")" + std::string(64, 'g') + R"("})",
      R"({"v":1,"type":"RestartTask","task_id":42})",
      // unknown field
      R"({"v":1,"type":"RestartTask","task_id":")" + id + R"(","extra":1})",
      // CreateTask fields
      R"({"v":1,"type":"CreateTask","task_id":")" + id + R"(","created_at":1})",
      R"({"v":1,"type":"CreateTask","task_id":")" + id + R"(","url":"u"})",
      R"({"v":1,"type":"CreateTask","task_id":")" + id + R"(","url":1,"created_at":1})",
      R"({"v":1,"type":"CreateTask","task_id":")" + id +
          R"(","url":"u","created_at":1,"digest":null})",
      R"({"v":1,"type":"CreateTask","task_id":")" + id +
          R"(","url":"u","created_at":18446744073709551615})",
      // MarkTaskReady fields
      R"({"v":1,"type":"MarkTaskReady","task_id":")" + id +
          R"(","size":-1,"sha256":"","metainfo":""})",
      R"({"v":1,"type":"MarkTaskReady","task_id":")" + id +
          R"(","size":1,"sha256":"","metainfo":"xyz"})",
      R"({"v":1,"type":"MarkTaskReady","task_id":")" + id +
          R"(","size":1.5,"sha256":"","metainfo":""})",
      R"({"v":1,"type":"MarkTaskReady","task_id":")" + id + R"(","size":1,"sha256":""})",
      // MarkTaskFailed fields
      R"({"v":1,"type":"MarkTaskFailed","task_id":")" + id + R"(","code":"x"})",
      R"({"v":1,"type":"MarkTaskFailed","task_id":")" + id + R"(","code":"x","message":[]})",
  };
  for (const std::string& bytes : cases) {
    auto decoded = decode_command(bytes);
    EXPECT_FALSE(decoded.ok()) << "accepted: " << bytes;
    if (!decoded.ok()) {
      EXPECT_EQ(decoded.error().code, kErrBadCommand);
    }
  }
}

TEST(CommandCodec, SurvivesDeepNestingAndGarbage) {
  std::string deep(100000, '[');
  EXPECT_FALSE(decode_command(deep).ok());
  std::string deep_closed = std::string(10000, '[') + std::string(10000, ']');
  EXPECT_FALSE(decode_command(deep_closed).ok());
  std::string garbage;
  for (int i = 0; i < 4096; ++i) garbage.push_back(static_cast<char>((i * 7919) & 0xff));
  EXPECT_FALSE(decode_command(garbage).ok());
}

}  // namespace
}  // namespace starling::tracker
