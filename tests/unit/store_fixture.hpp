#pragma once
// What the store tests share: a fresh state dir and loop per test, and a
// teardown that runs the loop dry (the store's handles close), checks that
// nothing is left open and removes the dir.
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "test.hpp"

namespace store_fixture {

struct Fixture {
    std::string dir;
    uv_loop_t loop;
};

inline int setup(void **state)
{
    auto *f = new Fixture;
    char tmpl[] = "/tmp/kiln-store-XXXXXX";
    const char *dir = mkdtemp(tmpl);
    *state = f;
    if (!dir)
        return -1;
    f->dir = dir;
    return uv_loop_init(&f->loop) == 0 ? 0 : -1;
}

inline int teardown(void **state)
{
    auto *f = static_cast<Fixture *>(*state);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    std::error_code ec;
    std::filesystem::remove_all(f->dir, ec); // the directory setup made
    if (ec)
        rc = -1;
    delete f;
    return rc == 0 ? 0 : -1;
}

} // namespace store_fixture
