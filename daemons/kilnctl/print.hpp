#pragma once
// How kilnctl shows an answer: JSON as it came, or a table for people.
#include <string>

#include <nlohmann/json.hpp>

namespace kiln {

// Print the dispatcher's answer to `what`; false when it is not of the
// expected shape.
bool print_answer(const std::string &what, const nlohmann::json &body, bool json);

} // namespace kiln
