#include "cli/args.h"

#include <algorithm>
#include <charconv>
#include <sstream>

namespace starling::cli {

std::string ParsedArgs::get(const std::string& flag, const std::string& fallback) const {
  auto it = flags.find(flag);
  return it == flags.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> ParsedArgs::all(const std::string& flag) const {
  auto it = flags.find(flag);
  return it == flags.end() ? std::vector<std::string>{} : it->second;
}

namespace {

Error usage_error(const CommandSpec* command, const std::string& what) {
  return make_error(kErrUsage, (command ? command->name + ": " : std::string()) + what);
}

const FlagSpec* find_long(const CommandSpec& c, const std::string& name) {
  for (const auto& f : c.flags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const FlagSpec* find_short(const CommandSpec& c, char name) {
  for (const auto& f : c.flags) {
    if (f.short_name != 0 && f.short_name == name) return &f;
  }
  return nullptr;
}

}  // namespace

Result<ParsedArgs> parse_args(const std::vector<CommandSpec>& commands,
                              const std::vector<std::string>& args) {
  ParsedArgs out;
  size_t i = 0;
  // Longest command name first, so "mesh init" wins over a hypothetical "mesh".
  size_t best_words = 0;
  for (const auto& c : commands) {
    std::istringstream words(c.name);
    std::string w;
    size_t n = 0;
    bool match = true;
    while (words >> w) {
      if (n >= args.size() || args[n] != w) {
        match = false;
        break;
      }
      ++n;
    }
    if (match && n > best_words) {
      best_words = n;
      out.command = &c;
    }
  }
  if (out.command == nullptr) {
    if (args.empty()) return usage_error(nullptr, "missing command");
    return usage_error(nullptr, "unknown command '" + args[0] + "'");
  }
  const CommandSpec& cmd = *out.command;
  i = best_words;

  bool flags_done = false;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!flags_done && a == "--") {
      flags_done = true;
      continue;
    }
    if (!flags_done && (a == "--help" || a == "-h")) {
      out.help = true;
      continue;
    }
    if (!flags_done && a.size() > 1 && a[0] == '-') {
      const FlagSpec* spec = nullptr;
      std::optional<std::string> inline_value;
      std::string shown = a;
      if (a.starts_with("--")) {
        std::string name = a.substr(2);
        if (auto eq = name.find('='); eq != std::string::npos) {
          inline_value = name.substr(eq + 1);
          name = name.substr(0, eq);
          shown = "--" + name;
        }
        spec = find_long(cmd, name);
      } else if (a.size() == 2) {
        spec = find_short(cmd, a[1]);
      }
      if (spec == nullptr) return usage_error(&cmd, "unknown flag " + shown);
      std::string value = "true";
      if (!spec->value_name.empty()) {
        if (inline_value) {
          value = *inline_value;
        } else if (i + 1 < args.size()) {
          value = args[++i];
        } else {
          return usage_error(&cmd, "--" + spec->name + " needs a value");
        }
      } else if (inline_value) {
        return usage_error(&cmd, "--" + spec->name + " takes no value");
      }
      auto& values = out.flags[spec->name];
      if (!values.empty() && !spec->repeatable) {
        return usage_error(&cmd, "--" + spec->name + " given twice");
      }
      values.push_back(value);
      continue;
    }
    if (out.positionals.size() >= cmd.positionals.size()) {
      return usage_error(&cmd, "unexpected argument '" + a + "'");
    }
    out.positionals.push_back(a);
  }
  if (out.help) return out;
  for (size_t p = out.positionals.size(); p < cmd.positionals.size(); ++p) {
    if (cmd.positionals[p].required) return usage_error(&cmd, "missing " + cmd.positionals[p].name);
  }
  for (const auto& f : cmd.flags) {
    if (f.required && !out.has(f.name)) return usage_error(&cmd, "missing --" + f.name);
  }
  return out;
}

std::string help_text(const std::string& program, const CommandSpec& command) {
  std::ostringstream o;
  o << "Usage: " << program << " " << command.name;
  for (const auto& p : command.positionals)
    o << (p.required ? " " : " [") << p.name << (p.required ? "" : "]");
  if (!command.flags.empty()) o << " [flags]";
  o << "\n\n" << command.summary << "\n";
  if (!command.positionals.empty()) {
    o << "\nArguments:\n";
    for (const auto& p : command.positionals) o << "  " << p.name << "\n      " << p.help << "\n";
  }
  o << "\nFlags:\n";
  for (const auto& f : command.flags) {
    o << "  ";
    if (f.short_name) o << "-" << f.short_name << ", ";
    o << "--" << f.name;
    if (!f.value_name.empty()) o << " " << f.value_name;
    if (f.required) o << "  (required)";
    if (f.repeatable) o << "  (repeatable)";
    o << "\n      " << f.help;
    if (!f.default_value.empty()) o << " [default: " << f.default_value << "]";
    o << "\n";
  }
  o << "  -h, --help\n      Show this help and exit.\n";
  if (!command.details.empty()) o << "\n" << command.details << "\n";
  return o.str();
}

std::string overview_text(const std::string& program, const std::vector<CommandSpec>& commands) {
  std::ostringstream o;
  o << "Usage: " << program << " COMMAND [flags]\n\n"
    << "Starling distributes files peer to peer inside an encrypted private mesh.\n\n"
    << "Commands:\n";
  size_t width = 0;
  for (const auto& c : commands) width = std::max(width, c.name.size());
  for (const auto& c : commands) {
    o << "  " << c.name << std::string(width - c.name.size() + 2, ' ') << c.summary << "\n";
  }
  o << "\nRun '" << program << " COMMAND --help' for the flags of a command.\n";
  return o.str();
}

Result<uint16_t> parse_port(const std::string& text, bool allow_zero) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty() || value > 65535 ||
      (value == 0 && !allow_zero)) {
    return make_error(kErrUsage, "invalid port '" + text + "'");
  }
  return static_cast<uint16_t>(value);
}

Result<HostPort> parse_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return make_error(kErrUsage, "expected HOST:PORT, got '" + text + "'");
  }
  auto port = parse_port(text.substr(colon + 1), false);
  if (!port) return make_error(kErrUsage, "expected HOST:PORT, got '" + text + "'");
  return HostPort{text.substr(0, colon), *port};
}

Result<std::vector<HostPort>> parse_host_ports(const std::string& text) {
  std::vector<HostPort> out;
  for (size_t begin = 0; begin <= text.size();) {
    const size_t comma = std::min(text.find(',', begin), text.size());
    auto hp = parse_host_port(text.substr(begin, comma - begin));
    if (!hp) return hp.error();
    out.push_back(std::move(hp).value());
    begin = comma + 1;
  }
  return out;
}

std::vector<std::string> split_names(std::string_view list, char separator) {
  std::vector<std::string> names;
  while (!list.empty()) {
    const size_t end = std::min(list.find(separator), list.size());
    if (end > 0) names.emplace_back(list.substr(0, end));
    list.remove_prefix(std::min(end + 1, list.size()));
  }
  return names;
}

}  // namespace starling::cli
