// The operator's subcommands: `starling status`, `starling kv get|put|cas|delete|list` and
// `starling mesh revoke|certificates`. All act as an admin (cli/admin.h) and accept a list of
// supernodes, trying the next one when a member is unreachable or cannot reach a majority.
#pragma once

#include "cli/args.h"

namespace starling::cli {

int run_status(const ParsedArgs& args);
int run_kv(const ParsedArgs& args);
// `mesh revoke NODE_ID [--reason TEXT]`: the Revoke RPC (NODE_ID may be a unique prefix of at
// least 8 hex characters, resolved with Certificates).
int run_mesh_revoke(const ParsedArgs& args);
// `mesh certificates [--stale]`: the Certificates RPC as a table (or JSON).
int run_mesh_certificates(const ParsedArgs& args);
// Either of the two, by args.command->name.
int run_mesh_admin(const ParsedArgs& args);
// `member add ID=HOST:PORT` / `member remove ID`: the MemberAdd / MemberRemove RPC.
int run_member(const ParsedArgs& args);

}  // namespace starling::cli
