// vad.cpp — placeholder until the implementation lands.
#include "stt/stt.h"
namespace parley::stt {
std::unique_ptr<Vad> create_vad(const std::string& model_path, std::string* error) {
    if (error) *error = model_path + ": VAD not implemented yet";
    return nullptr;
}
}  // namespace parley::stt
