// run_capture.h — test/bench support: run a shell command and return what it printed on stdout. Used
// where our engines are compared with upstream's command-line tools on the same model.
#pragma once

#include <cstdio>
#include <string>

namespace parley::testsupport {

inline std::string run_capture(const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
}

}  // namespace parley::testsupport
