// PUT /api/config bodies: any bytes -> JSON -> patch_to_overrides -> load_config. Must never crash, throw or
// accept a config load_config would refuse.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/config.h"
#include "common/config_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const parley::Config base = [] {
        std::string err;
        return *parley::load_config("", {"line.0.name=office", "line.0.registrar=sip:127.0.0.1", "line.0.user=1"}, &err);
    }();
    auto patch = nlohmann::json::parse(data, data + size, nullptr, false);
    if (patch.is_discarded()) return 0;
    std::string err;
    auto overrides = parley::patch_to_overrides(patch, base, &err);
    if (!overrides) return 0;
    (void)parley::patch_keys(patch);
    nlohmann::json merged = nlohmann::json::object();
    parley::merge_patch(merged, patch);
    std::vector<std::string> all = {"line.0.name=office", "line.0.registrar=sip:127.0.0.1", "line.0.user=1"};
    all.insert(all.end(), overrides->begin(), overrides->end());
    (void)parley::load_config("", all, &err);
    return 0;
}
