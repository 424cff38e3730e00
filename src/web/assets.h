// assets.h — the dashboard's files (web/), embedded at build time by embed_assets.cmake.
#pragma once

#include <cstddef>
#include <string_view>

namespace parley::web::assets {

struct Asset {
    const char* path;           // relative to web/, e.g. "index.html", "js/app.js"
    const unsigned char* data;
    std::size_t size;
};

extern const Asset kAssets[];   // kAssetCount entries, then a null sentinel
extern const std::size_t kAssetCount;

inline const Asset* find(std::string_view path) {
    for (std::size_t i = 0; i < kAssetCount; ++i) {
        if (path == kAssets[i].path) return &kAssets[i];
    }
    return nullptr;
}

}  // namespace parley::web::assets
