#pragma once
// For the config tests: the message of the ConfigError a call throws.
#include <functional>
#include <string>

#include <kiln/config.hpp>

// The message of the ConfigError fn throws, or "" when it throws none.
inline std::string error_of(const std::function<void()> &fn)
{
    try {
        fn();
    } catch (const kiln::ConfigError &e) {
        return e.what();
    }
    return "";
}
