#pragma once
// What the ctest plugin reads from ctest, and the one thing it writes for it:
//   - the JUnit XML of `ctest --output-junit FILE` (per-test name, status,
//     time, output): the only report ctest 3.21+ writes with durations and
//     output per test that is not meant for humans;
//   - the "The following tests FAILED:" list of ctest's stdout, for the one
//     thing JUnit does not tell: why a test failed ("Timeout", "Not Run",
//     "SEGFAULT", ...);
//   - from those two, the per-test results;
//   - the JSON of `ctest --show-only=json-v1`, for listing;
//   - the `-I` spec that selects exactly a set of names.
// Pure functions over strings, so that they are easy to reason about; the
// loop-facing part lives in ctest.cpp.  None of them throws except
// std::bad_alloc.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "exec_common.hpp"

namespace kiln_ctest {

// One <testcase> of ctest's JUnit report.
struct JunitCase {
    std::string name;
    std::string status;          // ctest writes "run", "fail", "notrun" or "disabled"
    uint64_t duration_ms = 0;
    bool skipped = false;        // has a <skipped> element
    std::string skipped_message; // its message attribute
    bool failure = false;        // has a <failure> element
    std::string output;          // <system-out>, unescaped
};

// The <testcase> elements of a JUnit document, in document order.  False with
// `error` set when there is no <testsuite> or a <testcase> is malformed (a
// truncated file); an empty suite is valid.
bool parse_junit(const std::string &xml, std::vector<JunitCase> &out, std::string &error);

// name → reason, from the "The following tests FAILED:" block of ctest's
// stdout, lines like "\t  7 - my test (Timeout)".
std::map<std::string, std::string> failed_reasons(const std::string &ctest_stdout);

// The test names of `ctest --show-only=json-v1` output, in ctest's order.
// False with `error` set when it is not that JSON.
bool parse_show_only(const std::string &json, std::vector<std::string> &names,
                     std::string &error);

// The results of a run: one record per JUnit case — the reasons of ctest's
// summary tell a timeout or a test that could not run from a failure — and
// an ERROR record for each name of `only` that ctest did not report.  With
// `only`, cases of other names (fixture setup and cleanup tests that ctest
// adds to a shard) are left out.
std::vector<kiln_exec::TestRecord> test_records(const std::vector<JunitCase> &cases,
                                                const std::string &ctest_stdout,
                                                const std::vector<std::string> &only);

// The `ctest -I` spec that runs exactly the tests of `only`: "0,0,0,"
// (no range) then their 1-based numbers in `listed`, the order of
// --show-only (ctest numbers tests that way); every number of a name that
// several tests share.  Empty when none of them is a
// test.  Used instead of `-R '^(a|b)$'`, whose compiled pattern ctest caps
// (cmsys::RegularExpression): past some 2,500 names it silently matches none.
std::string test_numbers(const std::vector<std::string> &listed,
                         const std::vector<std::string> &only);

// The last `max` bytes of text, at a line start where possible, for error
// texts that should say why without carrying a whole log.
std::string tail(const std::string &text, size_t max);

} // namespace kiln_ctest
