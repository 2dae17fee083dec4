#pragma once
// The JUnit XML of one commit's result: <testsuites> holding one
// <testsuite> (name = repository) with one <testcase> per test.  Pure
// string building, no I/O: the plugin calls it on the thread pool, the
// tests call it directly.
#include <string>

#include "report_copy.hpp"

namespace kiln_junit {

// Bounds, so that a runaway test cannot make a file no tool opens.
constexpr size_t kMaxMessage = 64 * 1024;  // a failure's text
constexpr size_t kMaxAttribute = 1024;     // its message="..." (first line)
constexpr size_t kMaxLog = 1024 * 1024;    // <system-out>: head and tail kept

// "test_mod.TestX.test_y" -> {"test_mod.TestX", "test_y"}; unittest's
// "test_y (test_mod.TestX)" -> the same; a name with fewer than two dots,
// or with a space or '/' (a script's file name, a ctest name) stays whole,
// its classname the repository's (`fallback`).
struct SplitName {
    std::string classname, name;
};
SplitName split_test_name(const std::string &test, const std::string &fallback);

// The whole document, well-formed for any bytes in the report: text is
// escaped (no CDATA, so "]]>" needs nothing special), characters XML 1.0
// forbids and malformed UTF-8 become U+FFFD.
std::string junit_xml(const kiln_report_copy::Report &rep);

} // namespace kiln_junit
