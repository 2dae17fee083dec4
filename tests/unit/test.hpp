#pragma once
// The one header every unit test includes: cmocka (whose Debian 1.1.5 header
// lacks extern "C"), plus small helpers.  A failing cmocka assert longjmps past
// C++ destructors, so tests that own resources build them in setup and free
// them in teardown.
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}
#include <string>

// Text of a std::string-like for assert_string_equal.
#define S(x) (std::string(x).c_str())
