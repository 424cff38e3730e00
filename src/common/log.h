// log.h — structured logging: one line per event, `event=name key=value ...`, never per audio frame.
//
// Thin wrapper over spdlog so every module logs the same way and tests can rely on the format:
//   2026-11-24T20:11:02.123 info  event=call_answered call=7 codec=PCMU
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace parley {

// Sets up the process-wide logger (stderr). Level is one of trace|debug|info|warn|error.
bool log_init(const std::string& level);

}  // namespace parley

#define PLOG_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define PLOG_DEBUG(...) spdlog::debug(__VA_ARGS__)
#define PLOG_INFO(...) spdlog::info(__VA_ARGS__)
#define PLOG_WARN(...) spdlog::warn(__VA_ARGS__)
#define PLOG_ERROR(...) spdlog::error(__VA_ARGS__)
