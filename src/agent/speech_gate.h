// speech_gate.h — the rule that turns Silero's per-window speech probabilities into speech / not speech,
// and the arithmetic of counting speech in windows. One definition, used by the conversation handler and
// by bench/vad_pauses (which measures the pauses this very rule produces). docs/conversation.md.
#pragma once

namespace parley::agent {

inline constexpr int kVadWindowSamples = 512;  // Silero's window at 16 kHz
inline constexpr int kVadWindowMs = 32;
inline constexpr double kVadHysteresis = 0.15;  // as Silero's own iterator: a word does not flicker off

class SpeechGate {
public:
    explicit SpeechGate(double threshold, bool hysteresis = true) : threshold_(threshold), hysteresis_(hysteresis) {}
    // One window's probability in, whether it counts as speech out: p >= threshold, or p >= threshold -
    // 0.15 while the previous window was speech.
    bool window(double p) {
        was_ = p >= threshold_ || (hysteresis_ && was_ && p >= threshold_ - kVadHysteresis);
        return was_;
    }
    void force_silence() { was_ = false; }
    // A speech minimum is reached by the window that gets nearest to it (200 ms → 6 windows = 192 ms).
    static bool reached(int run_ms, int min_ms) { return run_ms + kVadWindowMs / 2 >= min_ms; }

private:
    double threshold_;
    bool hysteresis_;
    bool was_ = false;
};

}  // namespace parley::agent
