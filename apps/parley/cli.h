// cli.h — `parley calls | show | call | hangup`: the operator's commands, on the running Parley's HTTP API
// (docs/api.md). Each prints a short table (or the API's JSON with --json) and exits 0, or prints the API's
// error message and exits 1 (2: cannot reach Parley or no token).
#pragma once

#include <string>
#include <vector>

namespace parley::cli {

struct ApiOptions {
    std::string base_url;  // e.g. http://127.0.0.1:8088 (default: from [http] listen)
    std::string token;     // default: PARLEY_TOKEN, [http] token, or the [http] token_file
    bool json = false;
};

struct CallsQuery {
    int limit = 20;
    int offset = 0;
    std::string q, status, direction;
};

// Fills what was not given on the command line from the environment (PARLEY_API, PARLEY_TOKEN) and the
// config (`config_path` may be empty: defaults). false and *error when no token can be found.
bool resolve(ApiOptions& api, const std::string& config_path, const std::vector<std::string>& sets,
             std::string* error);

// The token saved in [http] token_file (its first line), or "" when there is none (or it is too short to be one).
std::string read_token_file(const std::string& path);

int calls(const ApiOptions& api, const CallsQuery& q);
int show(const ApiOptions& api, const std::string& id);
int call(const ApiOptions& api, const std::string& uri, const std::string& line, const std::string& message);
int hangup(const ApiOptions& api, const std::string& id);

}  // namespace parley::cli
