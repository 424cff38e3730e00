# cmake/engines.cmake — whisper.cpp and llama.cpp on ONE ggml, from third_party/ (scripts/fetch-deps).
#
# Included by the top-level CMakeLists.txt *before* Parley's own compile options (warnings, sanitizers),
# so the engines build exactly as upstream builds them. Order matters: llama.cpp's ggml first, then
# llama.cpp, then whisper.cpp; each skips its own ggml because the `ggml` target already exists.
#
# Deviation from "LLAMA_BUILD_COMMON=OFF" (docs/engines-build.md): llama.cpp only adds its tools when
# COMMON is on, and the tests need the upstream llama-server / llama-completion as peers and references.
# Parley itself links only `llama`, `whisper` and `ggml`, never `common`. All three subdirectories are
# EXCLUDE_FROM_ALL: only what Parley links and the tools listed in `upstream_tools` are built.

set(PARLEY_TP ${PROJECT_SOURCE_DIR}/third_party)
if(NOT EXISTS ${PARLEY_TP}/llama.cpp/ggml/CMakeLists.txt OR NOT EXISTS ${PARLEY_TP}/whisper.cpp/CMakeLists.txt)
    message(FATAL_ERROR "third_party/ has no llama.cpp/whisper.cpp: run scripts/setup (or scripts/fetch-deps)")
endif()

set(CMAKE_POSITION_INDEPENDENT_CODE ON)
set(BUILD_SHARED_LIBS OFF CACHE BOOL "" FORCE)

set(GGML_NATIVE OFF CACHE BOOL "" FORCE)          # portable binaries (still AVX2: see docs/engines-build.md)
set(GGML_BUILD_TESTS OFF CACHE BOOL "" FORCE)
set(GGML_BUILD_EXAMPLES OFF CACHE BOOL "" FORCE)
set(GGML_CUDA ${PARLEY_CUDA} CACHE BOOL "" FORCE)
set(GGML_LLAMAFILE ON CACHE BOOL "" FORCE)         # llama.cpp's own default (it only applies it when it adds ggml)
add_subdirectory(${PARLEY_TP}/llama.cpp/ggml ${CMAKE_BINARY_DIR}/third_party/ggml EXCLUDE_FROM_ALL)

set(LLAMA_USE_PREBUILT_UI OFF CACHE BOOL "" FORCE)  # never download the web UI
set(LLAMA_BUILD_UI OFF CACHE BOOL "" FORCE)
set(LLAMA_OPENSSL OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_COMMON ON CACHE BOOL "" FORCE)      # needed by the upstream tools (see above)
set(LLAMA_BUILD_TOOLS ON CACHE BOOL "" FORCE)
set(LLAMA_BUILD_SERVER ON CACHE BOOL "" FORCE)
set(LLAMA_BUILD_EXAMPLES ON CACHE BOOL "" FORCE)
set(LLAMA_BUILD_TESTS OFF CACHE BOOL "" FORCE)
set(LLAMA_BUILD_APP OFF CACHE BOOL "" FORCE)
add_subdirectory(${PARLEY_TP}/llama.cpp ${CMAKE_BINARY_DIR}/third_party/llama.cpp EXCLUDE_FROM_ALL)

set(WHISPER_BUILD_TESTS OFF CACHE BOOL "" FORCE)
set(WHISPER_BUILD_EXAMPLES ON CACHE BOOL "" FORCE)
set(WHISPER_BUILD_SERVER ON CACHE BOOL "" FORCE)
set(WHISPER_SDL2 OFF CACHE BOOL "" FORCE)
set(WHISPER_CURL OFF CACHE BOOL "" FORCE)
add_subdirectory(${PARLEY_TP}/whisper.cpp ${CMAKE_BINARY_DIR}/third_party/whisper.cpp EXCLUDE_FROM_ALL)

# The upstream tools the tests compare against and talk to, built with `make build` into build/bin.
set(PARLEY_UPSTREAM_TOOLS llama-server llama-completion llama-simple llama-bench whisper-cli whisper-server
    whisper-bench)
add_custom_target(upstream_tools ALL DEPENDS ${PARLEY_UPSTREAM_TOOLS})
foreach(t ${PARLEY_UPSTREAM_TOOLS})
    set_target_properties(${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
endforeach()
