// llama_model.cpp — placeholder until the implementation lands.
#include "testmodels/testmodels.h"
namespace parley::testmodels {
bool write_llama_model(const std::string&, const std::string&, uint32_t, std::string* error) { if (error) *error = "not implemented yet"; return false; }
}  // namespace parley::testmodels
