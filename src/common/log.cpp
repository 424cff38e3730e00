#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace parley {

bool log_init(const std::string& level) {
    auto lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off") return false;
    if (!spdlog::get("parley")) {
        // Plain (uncoloured) stderr: the log is read by people, by journald and by the tests alike.
        auto logger = std::make_shared<spdlog::logger>("parley", std::make_shared<spdlog::sinks::stderr_sink_mt>());
        spdlog::register_logger(logger);
        spdlog::set_default_logger(logger);
    }
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %-5l %v");
    spdlog::set_level(lvl);
    spdlog::flush_on(spdlog::level::info);  // tests and operators tail the log; lines must not lag
    return true;
}

}  // namespace parley
