// The configuration as the API shows it (no secrets, ever) and PUT bodies turned into validated overrides.
#include <gtest/gtest.h>

#include "common/config.h"
#include "common/config_json.h"

namespace parley {
namespace {

using nlohmann::json;

Config with_secrets() {
    std::string err;
    auto cfg = load_config("", {"line.0.name=office", "line.0.registrar=sip:127.0.0.1", "line.0.user=1001",
                                "line.0.password=hunter2-secret", "llm.api_key=sk-remote-secret",
                                "stt.api_key=sk-stt-secret", "tts.api_key=sk-tts-secret"},
                           &err);
    EXPECT_TRUE(cfg) << err;
    return *cfg;
}

// Loads the defaults plus the patch, the way PUT /api/config does.
std::optional<Config> apply(const Config& base, const json& patch, std::string* err) {
    auto o = patch_to_overrides(patch, base, err);
    if (!o) return std::nullopt;
    std::vector<std::string> all = {"line.0.name=office", "line.0.registrar=sip:127.0.0.1", "line.0.user=1001",
                                    "line.0.password=hunter2-secret"};
    all.insert(all.end(), o->begin(), o->end());
    return load_config("", all, err);
}

TEST(ConfigJson, NeverContainsSecrets) {
    auto text = config_to_json(with_secrets()).dump();
    EXPECT_EQ(text.find("hunter2"), std::string::npos);
    EXPECT_EQ(text.find("sk-"), std::string::npos);
    EXPECT_EQ(text.find("\"password\""), std::string::npos);
    EXPECT_EQ(text.find("\"api_key\""), std::string::npos);
    auto j = config_to_json(with_secrets());
    EXPECT_EQ(j["lines"][0]["password_set"], true);
    EXPECT_EQ(j["llm"]["api_key_set"], true);
    EXPECT_EQ(j["agent"]["greeting"], Config{}.agent.greeting);
}

TEST(ConfigJson, PatchChangesOnlyGivenKeys) {
    auto base = with_secrets();
    std::string err;
    auto cfg = apply(base, {{"agent", {{"greeting", "Hi, Acme."}, {"end_of_turn_long_ms", 800}, {"barge_in", false}}},
                            {"llm", {{"system_prompt", "You are Acme's receptionist."}, {"temperature", 0.2}}},
                            {"tts", {{"voice", "en-gb"}}}},
                     &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_EQ(cfg->agent.greeting, "Hi, Acme.");
    EXPECT_EQ(cfg->agent.end_of_turn_long_ms, 800);
    EXPECT_FALSE(cfg->agent.barge_in);
    EXPECT_EQ(cfg->llm.system_prompt, "You are Acme's receptionist.");
    EXPECT_DOUBLE_EQ(cfg->llm.temperature, 0.2);
    EXPECT_EQ(cfg->tts.voice, "en-gb");
    EXPECT_EQ(cfg->agent.goodbye, base.agent.goodbye);
    EXPECT_EQ(cfg->lines.at(0).password, "hunter2-secret");
}

TEST(ConfigJson, LinesMatchedByNameAndPasswordWriteOnly) {
    auto base = with_secrets();
    std::string err;
    auto cfg = apply(base, {{"lines", {{{"name", "office"}, {"password", "new-secret"}}}}}, &err);
    ASSERT_TRUE(cfg) << err;
    ASSERT_EQ(cfg->lines.size(), 1u);
    EXPECT_EQ(cfg->lines[0].password, "new-secret");
    EXPECT_EQ(cfg->lines[0].user, "1001");
    auto added = apply(base, {{"lines", {{{"name", "shop"}, {"registrar", "sip:127.0.0.1:5070"}, {"user", "2001"}}}}},
                       &err);
    ASSERT_TRUE(added) << err;
    ASSERT_EQ(added->lines.size(), 2u);
    EXPECT_EQ(added->lines[1].name, "shop");
    EXPECT_EQ(patch_keys({{"lines", {{{"name", "office"}, {"password", "x"}}}}}),
              std::vector<std::string>{"lines.office.password"});
}

TEST(ConfigJson, RejectsWithMessagesNamingTheKey) {
    auto base = with_secrets();
    std::string err;
    EXPECT_FALSE(apply(base, json::array(), &err));
    EXPECT_NE(err.find("object"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"agent", {{"greting", "x"}}}}, &err));
    EXPECT_NE(err.find("agent.greting: unknown key"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"nope", json::object()}}, &err));
    EXPECT_NE(err.find("nope: unknown section"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"sip", {{"listen", "0.0.0.0:5061"}}}}, &err));
    EXPECT_NE(err.find("not changeable"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"agent", {{"greeting", 5}}}}, &err));
    EXPECT_NE(err.find("agent.greeting: expected a string"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"agent", {{"barge_in", "yes"}}}}, &err));
    EXPECT_NE(err.find("agent.barge_in: expected true or false"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"agent", {{"end_of_turn_long_ms", 1.5}}}}, &err));
    EXPECT_NE(err.find("agent.end_of_turn_long_ms"), std::string::npos) << err;
    // Range checks are the config file's own.
    EXPECT_FALSE(apply(base, {{"agent", {{"vad_threshold", 3}}}}, &err));
    EXPECT_NE(err.find("agent.vad_threshold: expected a number from"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"lines", {{{"password", "x"}}}}}, &err));
    EXPECT_NE(err.find("name: required"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"lines", {{{"name", "office"}, {"password_set", true}}}}}, &err));
    EXPECT_NE(err.find("unknown key"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"llm", {{"api_key_set", false}}}}, &err));
    EXPECT_NE(err.find("llm.api_key_set: unknown key"), std::string::npos) << err;
    EXPECT_FALSE(apply(base, {{"agent", {{"tools", {"hang_up", 3}}}}}, &err));
    EXPECT_NE(err.find("agent.tools"), std::string::npos) << err;
}

TEST(ConfigJson, MergeKeepsEveryChangeAndRestartKeys) {
    json into = {{"agent", {{"greeting", "a"}}}, {"lines", {{{"name", "office"}, {"password", "p1"}}}}};
    merge_patch(into, {{"agent", {{"goodbye", "b"}}}, {"lines", {{{"name", "office"}, {"expires", 60}}}}});
    EXPECT_EQ(into["agent"]["greeting"], "a");
    EXPECT_EQ(into["agent"]["goodbye"], "b");
    EXPECT_EQ(into["lines"][0]["password"], "p1");
    EXPECT_EQ(into["lines"][0]["expires"], 60);
    auto keys = patch_keys({{"agent", {{"greeting", "x"}}}, {"call", {{"max_concurrent", 4}}}});
    EXPECT_EQ(restart_keys(keys), std::vector<std::string>{"call.max_concurrent"});
}

}  // namespace
}  // namespace parley
