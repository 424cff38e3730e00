// config_json.h — the configuration as JSON for GET/PUT /api/config (docs/api.md "Configuration").
//
// config_to_json() uses the config file's section and key names and never contains a secret: a line's
// password becomes "password_set", an engine's api_key becomes "api_key_set". A PUT body is a partial
// document of the same shape; patch_to_overrides() turns it into the `--set` overrides load_config()
// already validates, so the API accepts exactly what the config file accepts, with the same messages.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"

namespace parley {

nlohmann::json config_to_json(const Config& config);

// Checks the patch's shape (an object; sections agent, llm, stt, tts, call, recording, lines; each value of
// the JSON type the key has in config_to_json(); lines an array of objects with a "name") and returns the
// overrides ("agent.greeting=...", "line.2.password=...") for load_config(path, file_overrides + these).
// Lines are matched by name against `base` (the config without the patch); a new name appends a line.
// nullopt and *error (naming the key) when the shape is wrong; values are range-checked by load_config.
std::optional<std::vector<std::string>> patch_to_overrides(const nlohmann::json& patch, const Config& base,
                                                           std::string* error);

// Merges `patch` into `into` (objects key by key, lines by name): the overrides file keeps every change.
void merge_patch(nlohmann::json& into, const nlohmann::json& patch);

// The keys a patch sets: "agent.greeting", "llm.system_prompt", "lines.office.password", ...
std::vector<std::string> patch_keys(const nlohmann::json& patch);

// Of those keys, the ones that need a restart (SIP lines, call limits, recordings); agent, llm, stt and tts
// apply to new calls at once (engines are re-created when their section changes).
std::vector<std::string> restart_keys(const std::vector<std::string>& keys);

}  // namespace parley
