#pragma once
// The one header every unit test includes: cmocka (whose Debian 1.1.5 header
// lacks extern "C"), plus small helpers.  A failing cmocka assert longjmps past
// C++ destructors, so tests that own resources build them in setup and free
// them in teardown.
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
// Before cmocka.h, whose fail() macro breaks the iostreams' fail().
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
extern "C" {
#include <cmocka.h>
}

// Text of a std::string-like for assert_string_equal.
#define S(x) (std::string(x).c_str())

// A fresh directory /tmp/PREFIX-XXXXXX, removed with all it holds when the
// object goes (std::filesystem, no shell).  A failing assert skips
// destructors: keep one in the state that teardown deletes.
class TempDir {
  public:
    explicit TempDir(const std::string &prefix = "kiln-test")
    {
        std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
        if (mkdtemp(tmpl.data()))
            path_ = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec; // best effort: a test's leftovers must not fail the next one
        if (!path_.empty())
            std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;

    // "" when mkdtemp failed (check it in setup).
    const std::string &path() const { return path_; }
    std::string operator/(const std::string &rel) const { return path_ + "/" + rel; }

  private:
    std::string path_;
};
